"""Run by test_training.py under `accelerate launch` with 2 CPU ranks: train, then each rank writes a
checksum of its trainable weights, so the test can check that both ranks ended identical."""

import json
import os
import sys
from pathlib import Path

import torch
from trl import ModelConfig, TrlParser

from llmrec.prompts.build import PromptBuildConfig
from llmrec.training import sft
from llmrec.training.config import RecArguments, RecSFTConfig

captured = {}
original = sft.SFTTrainer.train


def train_and_capture(self, *args, **kwargs):
    out = original(self, *args, **kwargs)
    captured["model"] = self.accelerator.unwrap_model(self.model)
    return out


sft.SFTTrainer.train = train_and_capture
parsed = TrlParser((PromptBuildConfig, RecArguments, RecSFTConfig, ModelConfig)).parse_args_and_config(sys.argv[1:])
sft.train_sft(*parsed)
params = [p.detach().double() for n, p in captured["model"].named_parameters() if p.requires_grad]
rank = int(os.environ.get("RANK", 0))
lora_b = [p for n, p in captured["model"].named_parameters() if "lora_B" in n]
Path(os.environ["LLMREC_DDP_DUMP"], f"rank{rank}.json").write_text(json.dumps({
    "world_size": int(os.environ.get("WORLD_SIZE", 1)),
    "checksum": float(sum((p * torch.arange(1, p.numel() + 1).view_as(p)).sum() for p in params)),
    "changed": sum(int((p != 0).sum()) for p in lora_b),
}))
