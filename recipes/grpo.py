"""GRPO of an SFT recommender: trie-constrained beam rollouts of G items, ranking rewards (MiniOneRec-style).

    accelerate launch recipes/sft.py --config recipes/configs/ml-100k/smollm2-lora-titles.yaml     # the start
    accelerate launch recipes/grpo.py --config recipes/configs/ml-100k/smollm2-grpo-titles.yaml

All options (ours and TRL's GRPOConfig): python recipes/grpo.py --help
The logic lives in llmrec.rl; this script only parses, trains and saves through it.
"""

import sys

from llmrec.cli import run

if __name__ == "__main__":
    sys.exit(run("llmrec.rl.train", sys.argv[1:]))
