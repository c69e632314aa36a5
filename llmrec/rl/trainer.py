"""`RecGRPOTrainer`: TRL's GRPOTrainer whose rollouts are catalog items and whose rewards rank them.

Nothing of GRPO is re-implemented: TRL samples the prompts (each repeated G times), calls our
`rollout_func` (`rollout.TrieRollout`), calls the reward functions (`rewards.py`), weights and sums them
(`reward_weights`), normalises per group into advantages, and takes the clipped policy-gradient step with a
KL term to the reference (beta). The reference is TRL's frozen "ref" copy of the SFT adapter (TRL makes it
for a PeftModel when beta != 0): no second model in memory. This class only wires the llmrec pieces in and
checks the options that would otherwise fail deep inside TRL or silently train on broken groups.
"""

from __future__ import annotations

import os
from typing import Any

from trl import GRPOTrainer

from llmrec.alignment.policy import Policy
from llmrec.errors import LlmrecError
from llmrec.rl.config import RecGRPOConfig, RLArguments
from llmrec.rl.rewards import REWARDS, Collaborative, RankAware, Semantic, hit
from llmrec.rl.rollout import TrieRollout

# rollout_func is TRL's documented extension point for custom generation; its "experimental" warning is
# expected here and would only repeat on every run.
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def check_rl_options(config: RLArguments, args: RecGRPOConfig, n_items: int) -> None:
    """Refuse, before anything loads or is written, options that cannot make whole groups of valid items."""
    G = args.num_generations  # TRL's GRPOConfig already refuses G < 2
    if config.rollout == "beam" and G > n_items:
        raise LlmrecError(f"--num_generations {G} > {n_items} catalog items: a beam cannot hold {G} distinct items")
    unknown = [r for r in config.rewards if r not in REWARDS]
    if not config.rewards or unknown:
        raise LlmrecError(f"--rewards: unknown {unknown or 'none given'}; choose from {', '.join(REWARDS)}")
    weights = args.reward_weights or [1.0] * len(config.rewards)
    if len(weights) != len(config.rewards):
        raise LlmrecError(f"--reward_weights has {len(weights)} values for {len(config.rewards)} rewards")
    if not any(weights):
        raise LlmrecError("--reward_weights are all zero: every advantage would be zero")
    if "collaborative" in config.rewards and not config.reward_model:
        raise LlmrecError("the collaborative reward needs a classic model folder (--reward_model)")
    per_process = args.per_device_train_batch_size * args.steps_per_generation
    if per_process % G:
        raise LlmrecError(f"per_device_train_batch_size x steps_per_generation = {per_process} is not a multiple of "
                          f"--num_generations {G}: a group's rollouts would be split across processes")
    if args.use_vllm:
        raise LlmrecError("--use_vllm: the trie-constrained rollouts run in the training process (vLLM rollouts "
                          "are not supported yet)")
    if config.rollout_temperature <= 0:
        raise LlmrecError(f"--rollout_temperature must be positive, got {config.rollout_temperature}")


def make_rewards(config: RLArguments, policy: Policy, group_size: int) -> list[Any]:
    """The configured reward functions, in `config.rewards` order (TRL's `reward_weights` follow it)."""
    out: list[Any] = []
    for name in config.rewards:
        if name == "hit":
            out.append(hit)
        elif name == "rank_aware":
            out.append(RankAware(group_size))
        elif name == "collaborative":
            from llmrec.collab.checkpoint import load_collab

            model = load_collab(config.reward_model, policy.dataset)  # refuses a model of another catalog
            out.append(Collaborative(model, policy.index.item_ids, group_size))
        else:
            from llmrec.indexing.embeddings import embed_texts, item_texts

            items = policy.dataset.items
            vectors = embed_texts(item_texts(items), config.embedding_model)
            out.append(Semantic(vectors, items.column("item_id").to_pylist()))
    return out


class RecGRPOTrainer(GRPOTrainer):
    """GRPOTrainer over a `Policy` (an SFT checkpoint's LoRA model, tokenizer and item index), with
    trie-constrained rollouts and the configured ranking rewards."""

    def __init__(self, policy: Policy, config: RLArguments, args: RecGRPOConfig, train_dataset: Any):
        check_rl_options(config, args, len(policy.index.item_ids))
        self.rollout = TrieRollout(policy.index, policy.tokenizer, args.num_generations, config.rollout,
                                   config.rollout_temperature)
        super().__init__(model=policy.model, reward_funcs=make_rewards(config, policy, args.num_generations),
                         args=args, train_dataset=train_dataset, processing_class=policy.tokenizer,
                         rollout_func=self.rollout)
