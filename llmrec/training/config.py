"""Recipe arguments: ours (`RecArguments`), TRL's `SFTConfig` and `ModelConfig`, and the prompt settings.

The recipe parses all four with `llmrec.cli.parse_args` (TRL's `TrlParser` with one-line errors), so one
YAML file (or flags) sets everything and every flag's help comes from its dataclass field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from trl import SFTConfig

from llmrec.errors import check_at_least
from llmrec.hardware import HardwareDefaults


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

    def __post_init__(self) -> None:  # checked when parsed: before any recipe loads a model
        check_at_least(self, {"ranking_k": 1, "ranking_eval_users": 1, "ranking_batch_size": 1})


@dataclass
class RecSFTConfig(HardwareDefaults, SFTConfig):
    """TRL's SFTConfig, with bf16 chosen by the hardware when not set (so one config runs on CPU and GPU), and
    CPU ranks joined into one process group when launched without an accelerator. bf16 autocast: 1.13x fp32's
    tokens/s for SmolLM2 LoRA on this AVX512-BF16 CPU (bench/bench_sft.py)."""
