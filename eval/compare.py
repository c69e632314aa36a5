"""Paired significance test between two report folders: the same as `llmrec eval compare` (see `--help`).

python eval/compare.py --a runs/ml-100k/report-most-popular --b runs/ml-100k/report-sft-lora-titles
"""

import sys

from llmrec.cli import run

if __name__ == "__main__":
    sys.exit(run("llmrec.evaluation.compare", sys.argv[1:]))
