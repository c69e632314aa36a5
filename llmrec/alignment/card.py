"""The model card (README.md) of a preference-aligned recommender: its SFT start, preference data and rounds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmrec.alignment.config import AlignmentArguments, RecDPOConfig
from llmrec.alignment.negatives import POOLED
from llmrec.alignment.policy import Policy

LOSS_NAMES = {"dpo": "DPO (TRL DPOTrainer, first negative)", "sdpo": "softmax-DPO (S-DPO, all negatives)"}


def write_alignment_card(out: Path, config: AlignmentArguments, args: RecDPOConfig, policy: Policy,
                         result: dict[str, Any]) -> None:
    k = config.ranking_k
    lines = [
        "---",
        "library_name: peft",
        "tags: [llmrec, recommendation, trl, dpo]",
        f"base_model: {policy.settings.get('base_model')}",
        "---",
        "# LLM recommender aligned with preferences by llmrec",
        "",
        f"- **Start:** SFT checkpoint `{config.sft_checkpoint}` (LoRA); reference: a frozen copy of the adapter "
        "at the start of each round",
        f"- **Loss:** {LOSS_NAMES[config.loss]}, beta {args.beta}",
        f"- **Preference data:** negatives `{config.negatives}` ({config.n_negatives} per prompt"
        + (f", pool {config.pool_size}" if config.negatives in POOLED else "")
        + (f", scored by `{config.negatives_model}`" if config.negatives_model else "")
        + f"), {config.max_train_rows} prompts sampled per round from the SFT prompts' training rows",
        f"- **Rounds:** {config.rounds} x {args.max_steps} steps, lr {args.learning_rate}, batch "
        f"{args.per_device_train_batch_size} x {args.gradient_accumulation_steps}, seed {args.seed}; "
        f"{'bf16 autocast' if result['bf16'] else 'fp32'}, {result['threads']} CPU threads per process",
        "",
        f"| round | rows | skipped | random fill | loss first -> last | reward acc. (last) | valid ndcg@{k} | "
        f"valid recall@{k} | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rounds"]:
        log = r["log"]
        loss = f"{log[0]['loss']:.4f} -> {log[-1]['loss']:.4f}" if log else "-"
        acc = f"{log[-1].get('rewards/accuracies', float('nan')):.2f}" if log else "-"
        v = r["valid_after"]
        lines.append(f"| {r['round']} | {r['train_rows']} | {sum(r['skipped'].values())} | "
                     f"{r['negatives']['filled_at_random']} | {loss} | {acc} | {v[f'ndcg@{k}']:.4f} | "
                     f"{v[f'recall@{k}']:.4f} | {r['train_seconds']} |")
    before = result["rounds"][0].get("valid_before")
    if before:
        lines.append(f"\nBefore alignment (the SFT model, same {config.ranking_eval_users} validation users): "
                     f"ndcg@{k} {before[f'ranking/ndcg@{k}']:.4f}, recall@{k} {before[f'ranking/recall@{k}']:.4f}.")
    lines += ["", "Each round's preference rows: `rounds/round-R/preference.jsonl`. Evaluate on the test split: "
              "`llmrec eval rank --checkpoint THIS_FOLDER --data DATASET --output REPORT`."]
    (out / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
