"""Arguments of `recipes/grpo.py`: ours (`RLArguments`) and TRL's `GRPOConfig` (`RecGRPOConfig`).

As in preference alignment, the prompts, item index and base model come from the SFT checkpoint folder,
so the policy is trained and evaluated on exactly the prompts it was fine-tuned on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from trl import GRPOConfig

from llmrec.alignment.config import PolicyArguments
from llmrec.hardware import HardwareDefaults


@dataclass
class RLArguments(PolicyArguments):
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
    ranking_eval_steps: int = field(default=0, metadata={"help": "Also rank them every N steps (0: only at "
                                                         "the start and the end)."})
    ranking_batch_size: int = field(default=16, metadata={"help": "Prompts per beam search in the rankings."})


@dataclass
class RecGRPOConfig(HardwareDefaults, GRPOConfig):
    """TRL's GRPOConfig, with bf16 chosen by the hardware when not set (as `RecSFTConfig`), and dropout off by
    default: the SFT adapter's LoRA dropout would make the policy's and the reference's log-probs of the same
    rollout disagree (noise in the ratio and the KL), and it cost a fifth of each CPU step here (profiled)."""

    disable_dropout: bool = field(default=True, metadata={"help": "Disable dropout in the model (llmrec's "
                                                          "default: True; TRL's: False)."})
