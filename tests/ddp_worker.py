"""Run by test_training.py under `accelerate launch` with 2 CPU ranks: train, then each rank writes what the
test compares across ranks and with a one-process run: a checksum of its trainable weights, its logged
losses, its ranking evaluations during training, and of the final one the metrics and every user's ranked
items with their scores."""

import json
import os
import sys
from pathlib import Path

import torch
from trl import ModelConfig, TrlParser

from llmrec.hardware import end_process_group
from llmrec.prompts.build import PromptBuildConfig
from llmrec.training import callbacks, sft
from llmrec.training.config import RecArguments, RecSFTConfig

captured = {}
original_train, original_rank = sft.SFTTrainer.train, callbacks.rank_on_every_process


def train_and_capture(self, *args, **kwargs):
    out = original_train(self, *args, **kwargs)
    captured["model"] = self.accelerator.unwrap_model(self.model)
    captured["processes"] = self.accelerator.num_processes  # 1 if the ranks never joined one process group
    return out


def rank_and_capture(*args, **kwargs):
    records = original_rank(*args, **kwargs)
    captured["records"] = {r["user_id"]: r for r in records}  # the last call is the final evaluation
    return records


def whole(p: torch.Tensor) -> torch.Tensor:
    """Under FSDP a rank holds a shard of each parameter (a DTensor): gather it whole (every rank joins)."""
    return p.full_tensor() if hasattr(p, "full_tensor") else p


sft.SFTTrainer.train, callbacks.rank_on_every_process = train_and_capture, rank_and_capture
parsed = TrlParser((PromptBuildConfig, RecArguments, RecSFTConfig, ModelConfig)).parse_args_and_config(sys.argv[1:])
result = sft.train_sft(*parsed)
params = [whole(p).detach().double().cpu() for n, p in captured["model"].named_parameters() if p.requires_grad]
rank = int(os.environ.get("RANK", 0))
lora_b = [whole(p) for n, p in captured["model"].named_parameters() if "lora_B" in n]
Path(os.environ["LLMREC_DDP_DUMP"], f"rank{rank}.json").write_text(
    json.dumps(
        {
            "world_size": captured["processes"],
            "checksum": float(sum((p * torch.arange(1, p.numel() + 1).view_as(p)).sum() for p in params)),
            "changed": sum(int((p != 0).sum()) for p in lora_b),
            "loss_history": result["loss_history"],
            "ranking_evals": result["ranking_evals"],
            "valid_metrics": result.get("valid_metrics"),
            "records": captured.get("records"),
        }
    )
)
end_process_group()  # as llmrec's own commands do on exit (llmrec.cli.run_guarded)
