"""Prepare a dataset folder: the same as `llmrec data prepare` (see `--help`).

python data_prep/prepare.py --dataset ml-100k --output runs/ml-100k/dataset
python data_prep/prepare.py --config data_prep/configs/ml-100k.yaml
"""

import sys

from llmrec.cli import run

if __name__ == "__main__":
    sys.exit(run("llmrec.data.prepare", sys.argv[1:]))
