"""Fine-tune an LLM recommender with SFT (LoRA, QLoRA, full or from scratch).

    accelerate launch recipes/sft.py --config recipes/configs/ml-100k/smollm2-lora-titles.yaml
    python recipes/sft.py --config ... --max_steps 10          # flags override the YAML

All options (ours, TRL's SFTConfig and ModelConfig, the prompt settings): python recipes/sft.py --help
The logic lives in llmrec.training.sft; this script only parses, trains and saves through it.
"""

import sys

from llmrec.cli import run

if __name__ == "__main__":
    sys.exit(run("llmrec.training.sft", sys.argv[1:]))
