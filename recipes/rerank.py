"""Fine-tune an LLM re-ranker over a classic retriever's top-N candidates (letter verbalizer + fusion).

    python recipes/collab.py --config recipes/configs/ml-100k/sasrec.yaml --candidates 20   # the retriever
    accelerate launch recipes/rerank.py --config recipes/configs/ml-100k/smollm2-rerank.yaml

All options (ours, transformers' TrainingArguments, TRL's ModelConfig): python recipes/rerank.py --help
The logic lives in llmrec.rerank.train; this script only parses, trains and saves through it.
"""

import sys

from llmrec.cli import run

if __name__ == "__main__":
    sys.exit(run("llmrec.rerank.train", sys.argv[1:]))
