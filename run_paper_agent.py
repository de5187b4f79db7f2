"""The released entry point, kept: ``python run_paper_agent.py --input_file data/RealScholarQuery/test.jsonl
--crawler_path checkpoints/pasa-7b-crawler --selector_path checkpoints/pasa-7b-selector --output_folder results``.

Same as ``pasa run`` with the released flag names accepted (see ``pasa/runner.py`` for the launch lines and
``pasa/flags.py`` for the names); ``--demo`` runs ``pasa demo``.
"""

import sys

from pasa.runner import demo_main, main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv and argv[0] == "--demo":
        sys.exit(demo_main(argv[1:]))
    sys.exit(main(argv, prog="run_paper_agent.py"))
