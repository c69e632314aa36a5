"""Recipe arguments: ours (`RecArguments`), TRL's `SFTConfig` and `ModelConfig`, and the prompt settings.

The recipe parses all four with `TrlParser`, so one YAML file (or flags) sets everything and every flag's
help comes from its dataclass field.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from trl import SFTConfig


@dataclass
class RecArguments:
    model_init: Literal["pretrained", "scratch"] = field(
        default="pretrained",
        metadata={
            "help": "pretrained: load --model_name_or_path. scratch: a new model of the scratch_* size with "
            "that model's tokenizer and architecture (TIGER-style generative retrieval)."
        },
    )
    scratch_hidden_size: int = field(default=128, metadata={"help": "scratch: hidden size."})
    scratch_layers: int = field(default=4, metadata={"help": "scratch: transformer layers."})
    scratch_heads: int = field(default=4, metadata={"help": "scratch: attention heads."})
    train_new_tokens: bool = field(
        default=True,
        metadata={
            "help": "LoRA: also train the embedding rows of the index's new item tokens (PEFT "
            "trainable_token_indices); without it they stay at their initial values."
        },
    )
    ranking_eval_steps: int = field(
        default=0,
        metadata={
            "help": "Every N steps, rank items for --ranking_eval_users validation users and log "
            "NDCG/Recall@K (0: only at the end)."
        },
    )
    ranking_eval_at_start: bool = field(
        default=True, metadata={"help": "Also rank before the first step: the untrained model's reference numbers."}
    )
    ranking_eval_users: int = field(default=100, metadata={"help": "Validation users sampled for ranking evals."})
    ranking_k: int = field(default=10, metadata={"help": "K for ranking evals (beam width of the search)."})
    ranking_batch_size: int = field(default=16, metadata={"help": "Users per batch in ranking evals."})
    final_eval: bool = field(default=True, metadata={"help": "Rank validation users after training (model card)."})


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 autocast pays."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def choose_bf16(bf16: bool | None) -> tuple[bool, bool]:
    """-> (bf16, use_cpu): bf16 when asked, or when unset and the hardware has it (a CUDA GPU, or a CPU with
    native bf16); transformers accepts bf16 on a machine without CUDA only with use_cpu set."""
    import torch

    cuda = torch.cuda.is_available()
    if bf16 is None:
        bf16 = bool(cuda and torch.cuda.is_bf16_supported()) or (not cuda and cpu_has_bf16())
    return bf16, bf16 and not cuda


def launched_ranks_without_accelerator() -> bool:
    """Whether a launcher started several ranks (WORLD_SIZE > 1) on a machine with no GPU or other accelerator."""
    import torch

    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6; older: CUDA is the only one we check
    present = accelerator.is_available() if accelerator is not None else torch.cuda.is_available()
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not present


@dataclass
class RecSFTConfig(SFTConfig):
    """TRL's SFTConfig, with bf16 chosen by the hardware when not set (so one config runs on CPU and GPU), and
    CPU ranks joined into one process group when launched without an accelerator."""

    def __post_init__(self) -> None:
        if self.bf16 is None:
            import torch

            self.bf16 = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        # accelerate's multi-process launcher does not pass the config's `use_cpu` on to the ranks, and without
        # it accelerate finds no device to distribute over: every rank would train alone on all the data.
        if launched_ranks_without_accelerator():
            self.use_cpu = True
        super().__post_init__()
