"""The released entry point, kept: ``python run_paper_agent.py --input_file data/RealScholarQuery/test.jsonl
--crawler_path checkpoints/pasa-7b-crawler --selector_path checkpoints/pasa-7b-selector --output_folder results``.

Same as ``pasa run`` (``pasa/runner.py``), with the released script's flag names accepted where ours differ
(:data:`RELEASED_FLAGS`); ``--demo`` runs ``pasa demo``.
"""

import sys

from pasa.demo import demo_main
from pasa.runner import main

# The released run_paper_agent.py's flags whose name differs here (released -> ours). Its other flags
# (--input_file, --crawler_path, --selector_path, --expand_layers, --search_queries, --search_papers,
# --expand_papers, --threads_num) have the same names.
RELEASED_FLAGS = {"--output_folder": "--output_dir"}

if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv and argv[0] == "--demo":
        sys.exit(demo_main(argv[1:]))
    sys.exit(main(argv, prog="run_paper_agent.py", released_names=RELEASED_FLAGS))
