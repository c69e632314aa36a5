"""`recipes/grpo.py` / `llmrec train grpo`: GRPO of an SFT recommender with ranking rewards.

Sample training prompts (the SFT run's own prompt settings; rows whose answer is not an item are dropped
and counted), train `RecGRPOTrainer` (trie-constrained rollouts of G items, weighted rewards, KL to the
SFT adapter), rank validation users before and after, and save an SFT-shaped checkpoint (adapter,
tokenizer, item_index/, llmrec.json, model card) that `llmrec eval rank --checkpoint` scores like any other.
An interrupted run resumes from its last checkpoint-N. The result records where the seconds went: rollout
(decoding) and update (forward, backward, reference) per step, tokens/s and the process's peak memory.
"""

from __future__ import annotations

import dataclasses
import resource
import time
from pathlib import Path
from typing import Any

from accelerate import PartialState
from transformers import set_seed

from llmrec.alignment.policy import Policy, load_policy
from llmrec.alignment.preferences import answers_with_target
from llmrec.errors import LlmrecError, check_at_least
from llmrec.hardware import use_every_core
from llmrec.rl.card import write_rl_card
from llmrec.rl.config import RecGRPOConfig, RLArguments
from llmrec.rl.trainer import RecGRPOTrainer
from llmrec.training.callbacks import RankingEvalCallback
from llmrec.training.sft import check_output_dir, resume_checkpoint

LOGGED = ("loss", "reward", "reward_std", "rewards/", "kl", "hit_groups", "rollout/", "step", "num_tokens")


def rl_rows(policy: Policy, n: int, seed: int) -> tuple[Any, int]:
    """A seeded sample of the SFT training prompts whose answer is the target item -> (rows with prompt,
    target_item_id, user_id, history_item_ids; how many were dropped)."""
    rows = policy.train_rows(n, seed)
    keep = [r for r, is_item in enumerate(answers_with_target(rows, policy.index)) if is_item]
    if not keep:
        raise LlmrecError("no training prompt answers with an item: GRPO over items needs next-item rows")
    columns = ["prompt", "target_item_id", "user_id", "history_item_ids"]
    return rows.select(keep).select_columns(columns), len(rows) - len(keep)


def train_grpo(config: RLArguments, args: RecGRPOConfig) -> dict[str, Any]:
    check_output_dir(args.output_dir)
    check_at_least(config, {"max_train_rows": 1, "ranking_eval_users": 1, "ranking_k": 1, "ranking_batch_size": 1,
                            "ranking_eval_steps": 0})
    threads = use_every_core()
    set_seed(args.seed)
    policy = load_policy(config.sft_checkpoint, config.data)
    rows, dropped = rl_rows(policy, config.max_train_rows, args.seed)
    trainer = RecGRPOTrainer(policy, config, args, rows)
    ranking = RankingEvalCallback(trainer, policy.index, policy.dataset, policy.eval_rows(config.ranking_eval_users,
                                  args.seed), config.ranking_eval_steps, config.ranking_k, config.ranking_batch_size,
                                  at_start=True, trie=policy.trie)
    trainer.add_callback(ranking)
    resume = resume_checkpoint(args)
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - start
    policy.drop_reference()
    valid = ranking.evaluate().metrics
    log = trainer.state.log_history
    steps = max(trainer.state.global_step, 1)
    rollout_seconds = trainer.rollout.seconds
    tokens = trainer.state.num_input_tokens_seen
    result = {
        "train_rows": len(rows), "dropped_rows": dropped, "steps": trainer.state.global_step, "resumed_from": resume,
        "train_seconds": round(seconds, 1), "threads": threads, "bf16": bool(args.bf16),
        "seconds_per_step": {"total": round(seconds / steps, 2), "rollout": round(rollout_seconds / steps, 2),
                             "update": round((seconds - rollout_seconds) / steps, 2)},
        "train_tokens": int(tokens), "tokens_per_second": round(tokens / seconds, 1) if seconds else 0.0,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),  # Linux: KiB
        "invalid_items": trainer.rollout.invalid,
        "log": [{k: v for k, v in e.items() if k.startswith(LOGGED)} for e in log if "loss" in e],
        "valid_before": ranking.history[0] if ranking.history else None,
        "valid_after": {k: v["value"] for k, v in valid.items() if "@" in k and isinstance(v, dict)},
    }
    if PartialState().is_main_process:
        out = Path(args.output_dir)
        policy.save(out, rl=dataclasses.asdict(config), result=result, sft_checkpoint=config.sft_checkpoint,
                    grpo={k: getattr(args, k) for k in ("num_generations", "beta", "reward_weights", "loss_type",
                                                        "learning_rate", "max_steps", "seed")})
        write_rl_card(out, config, args, policy, result)
    return result


def main(argv: list[str] | None = None) -> None:
    from llmrec.cli import parse_args

    config, args = parse_args((RLArguments, RecGRPOConfig), argv, prog="recipes/grpo.py")
    result = train_grpo(config, args)
    if not PartialState().is_main_process:
        return
    k, before, after = config.ranking_k, result["valid_before"] or {}, result["valid_after"]
    s = result["seconds_per_step"]
    print(f"{result['steps']} steps in {result['train_seconds']} s ({s['rollout']} s rollout + {s['update']} s update "
          f"per step); valid ndcg@{k} {before.get(f'ranking/ndcg@{k}', float('nan')):.4f} -> "
          f"{after[f'ndcg@{k}']:.4f}, recall@{k} {after[f'recall@{k}']:.4f}")
    print(f"saved {args.output_dir}")
