"""Score a results folder with the paper's metrics: a thin launcher for ``pasa eval`` (``pasa/evaluate.py``).

Launch lines::

    python scripts/eval.py results/real
    python scripts/eval.py results/real --ensemble results/real_run2 --output_file results/real_ensemble.json
    python scripts/eval.py results/real --per_query --format markdown --exclude_no_answer
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pasa.evaluate import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(prog="scripts/eval.py"))
