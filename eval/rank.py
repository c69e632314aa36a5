"""Score ranked lists against a prepared dataset: the same as `llmrec eval rank` (see `--help`).

python eval/rank.py --rankings runs/x/rankings.jsonl --data runs/ml-100k/dataset --output runs/x/report
"""

import sys

from llmrec.cli import run

if __name__ == "__main__":
    sys.exit(run("llmrec.evaluation.rank", sys.argv[1:]))
