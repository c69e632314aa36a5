"""Arguments of `recipes/grpo.py`: ours (`RLArguments`) and TRL's `GRPOConfig` (`RecGRPOConfig`).

As in preference alignment, the prompts, item index and base model come from the SFT checkpoint folder,
so the policy is trained and evaluated on exactly the prompts it was fine-tuned on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from trl import GRPOConfig

from llmrec.hardware import HardwareDefaults


@dataclass
class RLArguments:
    sft_checkpoint: str = field(metadata={"help": "Output folder of recipes/sft.py (a LoRA adapter): the policy's "
                                          "start and its KL reference (a frozen copy of the adapter)."})
    data: str | None = field(default=None, metadata={"help": "Prepared dataset folder; default: the SFT run's."})
    rewards: list[str] = field(
        default_factory=lambda: ["hit", "rank_aware"],
        metadata={"help": "Rewards summed per rollout with TRL's reward_weights (llmrec.rl.rewards): hit, "
                  "rank_aware (MiniOneRec), collaborative (needs --reward_model), semantic (item-text cosine)."},
    )
    reward_model: str | None = field(default=None, metadata={"help": "Classic model folder (llmrec train collab) "
                                                             "whose scores are the collaborative reward."})
    embedding_model: str = field(default="all-minilm-l6-v2", metadata={"help": "Sentence-transformers model of "
                                                                       "the semantic reward's item-text vectors."})
    rollout: Literal["beam", "sample"] = field(
        default="beam",
        metadata={"help": "beam: the G best distinct items of a trie-constrained beam search (num_beams = G, "
                  "MiniOneRec). sample: G trie-constrained samples at --rollout_temperature (items may repeat)."},
    )
    rollout_temperature: float = field(default=1.0, metadata={"help": "Temperature of --rollout sample."})
    max_train_rows: int = field(default=1000, metadata={"help": "Training prompts: a seeded sample of the SFT "
                                                        "prompts' training rows."})
    ranking_eval_users: int = field(default=64, metadata={"help": "Validation users ranked before and after "
                                                          "training (and every --ranking_eval_steps)."})
    ranking_eval_steps: int = field(default=0, metadata={"help": "Also rank them every N steps (0: only at "
                                                         "the start and the end)."})
    ranking_k: int = field(default=10, metadata={"help": "K of the ranking evaluations (beam width)."})
    ranking_batch_size: int = field(default=16, metadata={"help": "Prompts per beam search in the rankings."})


@dataclass
class RecGRPOConfig(HardwareDefaults, GRPOConfig):
    """TRL's GRPOConfig, with bf16 chosen by the hardware when not set (as `RecSFTConfig`), and dropout off by
    default: the SFT adapter's LoRA dropout would make the policy's and the reference's log-probs of the same
    rollout disagree (noise in the ratio and the KL), and it cost a fifth of each CPU step here (profiled)."""

    disable_dropout: bool = field(default=True, metadata={"help": "Disable dropout in the model (llmrec's "
                                                          "default: True; TRL's: False)."})
