"""Align an SFT recommender with preferences: DPO or softmax-DPO (S-DPO), negatives by strategy, in rounds.

    accelerate launch recipes/sft.py --config recipes/configs/ml-100k/smollm2-lora-titles.yaml     # the start
    accelerate launch recipes/dpo.py --config recipes/configs/ml-100k/smollm2-sdpo-titles.yaml

All options (ours and TRL's DPOConfig): python recipes/dpo.py --help
The logic lives in llmrec.alignment; this script only parses, trains and saves through it.
"""

import sys

from llmrec.cli import run

if __name__ == "__main__":
    sys.exit(run("llmrec.alignment.train", sys.argv[1:]))
