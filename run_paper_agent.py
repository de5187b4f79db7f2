"""The released entry point, kept: ``python run_paper_agent.py --input_file ... --crawler ... --selector ...``.

Same as ``pasa run`` (see ``pasa/runner.py`` for the launch lines); ``--demo`` runs ``pasa demo``.
"""

import sys

from pasa.runner import demo_main, main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv and argv[0] == "--demo":
        sys.exit(demo_main(argv[1:]))
    sys.exit(main(argv))
