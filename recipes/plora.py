"""Fine-tune a personalized LoRA (iLoRA / RecLoRA experts gated per user) with SFT.

    python recipes/plora.py --config recipes/configs/ml-100k/smollm2-plora-titles.yaml
    python recipes/plora.py --config ... --shape reclora --max_steps 10     # flags override the YAML

All options (the personalization, ours, TRL's SFTConfig and ModelConfig, the prompt settings):
python recipes/plora.py --help. The logic lives in llmrec.plora.train.
"""

import sys

from llmrec.cli import run

if __name__ == "__main__":
    sys.exit(run("llmrec.plora.train", sys.argv[1:]))
