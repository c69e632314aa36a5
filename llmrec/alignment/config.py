"""Arguments of `recipes/dpo.py`: ours (`AlignmentArguments`) and TRL's `DPOConfig` (`RecDPOConfig`).

The prompts, item index and base model come from the SFT checkpoint folder, so the aligned model sees
exactly the prompts it was fine-tuned (and is evaluated) on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from trl import DPOConfig

from llmrec.hardware import HardwareDefaults


@dataclass
class PolicyArguments:
    """What every stage after SFT (recipes/dpo.py, recipes/grpo.py) shares: where the policy starts, the data,
    how many training prompts, and the validation ranking."""

    sft_checkpoint: str = field(metadata={"help": "Output folder of recipes/sft.py (a LoRA adapter): the policy's "
                                          "start and its reference (a frozen copy of the adapter)."})
    data: str | None = field(default=None, metadata={"help": "Prepared dataset folder; default: the SFT run's."})
    max_train_rows: int = field(default=1000, metadata={"help": "Training prompts: a seeded sample of the SFT "
                                                        "prompts' training rows (dpo: per round, new each round)."})
    ranking_eval_users: int = field(default=64, metadata={"help": "Validation users ranked before and after "
                                                          "training (dpo: after each round)."})
    ranking_k: int = field(default=10, metadata={"help": "K of the ranking evaluations (beam width)."})


@dataclass
class AlignmentArguments(PolicyArguments):
    loss: Literal["dpo", "sdpo"] = field(
        default="sdpo",
        metadata={"help": "dpo: TRL's DPOTrainer on (chosen, first negative) with any TRL loss_type. sdpo: "
                  "softmax-DPO over all n_negatives (Chen et al. 2024); with n_negatives 1 it equals dpo."},
    )
    negatives: Literal["random", "popularity", "candidates", "self_play", "reward_model"] = field(
        default="random",
        metadata={"help": "How rejected items are chosen (llmrec.alignment.negatives): random unseen items, "
                  "popularity-weighted, from the candidate list, the model's own top generations (self_play, "
                  "SPRec), or its generations scored lowest by --negatives_model (reward_model, OneRec-style)."},
    )
    n_negatives: int = field(default=3, metadata={"help": "Rejected items per prompt (dpo uses the first)."})
    pool_size: int = field(default=10, metadata={"help": "Generations (self_play, reward_model) or classic-model "
                                                 "candidates per row that negatives are picked from."})
    negatives_model: str | None = field(
        default=None, metadata={"help": "Classic model folder (llmrec train collab) scoring reward_model negatives "
                                "and making candidate lists for rows without one."})
    rounds: int = field(default=1, metadata={"help": "Rounds of: pick negatives with the current model, build "
                                             "pairs, train max_steps. Round r's reference is round r-1's policy."})
    generation_batch_size: int = field(default=16, metadata={"help": "Prompts per beam search for self_play and "
                                                             "reward_model negatives and the ranking evaluation."})


@dataclass
class RecDPOConfig(HardwareDefaults, DPOConfig):
    """TRL's DPOConfig, with bf16 chosen by the hardware when not set (as `RecSFTConfig`)."""
