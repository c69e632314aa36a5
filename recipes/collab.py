"""Fit a classic recommender (SASRec, BPR-MF or EASE): the baselines, retrievers and user encoders; or an LLM
that reads SASRec's item embeddings as tokens and scores the catalog with an item head (E4SRec).

    python recipes/collab.py --config recipes/configs/ml-100k/sasrec.yaml
    python recipes/collab.py --config recipes/configs/ml-100k/ease.yaml --candidates 20   # export top-20
    python recipes/collab.py --config recipes/configs/ml-100k/smollm2-itemhead.yaml       # after sasrec.yaml

All options: python recipes/collab.py --help (the same as `llmrec train collab`).
The logic lives in llmrec.collab.train; this script only parses, trains and saves through it.
"""

import sys

from llmrec.cli import run

if __name__ == "__main__":
    sys.exit(run("llmrec.collab.train", sys.argv[1:]))
