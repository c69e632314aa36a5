"""The model card (README.md) of a GRPO-trained recommender: its SFT start, rollouts, rewards and cost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmrec.alignment.policy import Policy
from llmrec.rl.config import RecGRPOConfig, RLArguments


def write_rl_card(out: Path, config: RLArguments, args: RecGRPOConfig, policy: Policy, result: dict[str, Any]) -> None:
    k, G = config.ranking_k, args.num_generations
    weights = args.reward_weights or [1.0] * len(config.rewards)
    rollout = (f"trie-constrained beam search, the {G} best distinct items (num_beams = G)" if config.rollout == "beam"
               else f"{G} trie-constrained samples at temperature {config.rollout_temperature}")
    s = result["seconds_per_step"]
    lines = [
        "---",
        "library_name: peft",
        "tags: [llmrec, recommendation, trl, grpo]",
        f"base_model: {policy.settings.get('base_model')}",
        "---",
        "# LLM recommender trained with GRPO by llmrec",
        "",
        f"- **Start:** SFT checkpoint `{config.sft_checkpoint}` (LoRA); KL reference: a frozen copy of that adapter",
        f"- **Rollouts:** {rollout}; invalid items over the run: {result['invalid_items']}",
        "- **Rewards:** " + ", ".join(f"{name} x {w:g}" for name, w in zip(config.rewards, weights))
        + (f" (collaborative: `{config.reward_model}`)" if "collaborative" in config.rewards else ""),
        f"- **GRPO (TRL):** G {G}, beta {args.beta}, loss {args.loss_type}, {result['steps']} steps, lr "
        f"{args.learning_rate}, batch {args.per_device_train_batch_size} x {args.gradient_accumulation_steps}, "
        f"seed {args.seed}; {result['train_rows']} prompts ({result['dropped_rows']} without an item answer dropped)",
        f"- **Cost:** {result['train_seconds']} s ({s['rollout']} s rollout + {s['update']} s update per step), "
        f"{result['tokens_per_second']} tokens/s, peak {result['peak_rss_mib']} MiB; "
        f"{'bf16 autocast' if result['bf16'] else 'fp32'}, {result['threads']} CPU threads per process",
        "",
        "| step | reward | hit groups | kl | loss |",
        "|---|---|---|---|---|",
    ]
    for e in result["log"]:
        lines.append(f"| {e.get('step')} | {e.get('reward', float('nan')):.4f} | "
                     f"{e.get('hit_groups', float('nan')):.3f} | {e.get('kl', float('nan')):.4f} | "
                     f"{e['loss']:.4f} |")
    before, after = result["valid_before"], result["valid_after"]
    lines.append(f"\nValidation ({config.ranking_eval_users} users): ndcg@{k} "
                 + (f"{before[f'ranking/ndcg@{k}']:.4f} (SFT) -> " if before else "")
                 + f"{after[f'ndcg@{k}']:.4f}, recall@{k} "
                 + (f"{before[f'ranking/recall@{k}']:.4f} -> " if before else "") + f"{after[f'recall@{k}']:.4f}.")
    lines += ["", "Evaluate on the test split: `llmrec eval rank --checkpoint THIS_FOLDER --data DATASET --output "
              "REPORT`."]
    (out / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
