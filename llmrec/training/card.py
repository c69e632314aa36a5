"""The model card (README.md) of a fine-tuned recommender: what it was trained on and how it scored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trl import ModelConfig

from llmrec.data.dataset import PreparedDataset
from llmrec.indexing.item_index import ItemIndex
from llmrec.prompts.build import PromptBuildConfig
from llmrec.training.config import RecArguments, RecSFTConfig


def write_model_card(out: Path, prompts: PromptBuildConfig, rec: RecArguments, args: RecSFTConfig,
                     margs: ModelConfig, dataset: PreparedDataset, index: ItemIndex, result: dict[str, Any]) -> None:
    tuning = ("QLoRA (4-bit base)" if margs.load_in_4bit and margs.use_peft else "LoRA" if margs.use_peft
              else "full fine-tuning")
    base = "scratch (from config)" if rec.model_init == "scratch" else margs.model_name_or_path
    s, protocol = dataset.stats, dataset.protocol
    lines = [
        "---",
        "library_name: " + ("peft" if margs.use_peft else "transformers"),
        "tags: [llmrec, recommendation, trl, sft]",
        *([f"base_model: {margs.model_name_or_path}"] if rec.model_init == "pretrained" else []),
        "---",
        "# LLM recommender fine-tuned with llmrec",
        "",
        f"- **Base model:** {base}; **tuning:** {tuning}"
        + (f" (r={margs.lora_r}, alpha={margs.lora_alpha}, targets={margs.lora_target_modules or 'default'})"
           if margs.use_peft else ""),
        f"- **Data:** `{prompts.data}`: {s['n_users']} users, {s['n_items']} items, {s['n_interactions']} interactions",
        f"- **Split protocol:** {protocol['method']}: {protocol.get('rule', '')}; order: {protocol['order']}",
        f"- **Item index:** {index.method} ({len(index.new_tokens)} new tokens; raw collision rate "
        f"{index.stats.get('collision_rate_raw', 0):.2%}, final collisions {index.stats.get('collisions_final', 0)})",
        f"- **Prompts:** families {', '.join(prompts.families)}, items shown as `{prompts.item_format}`, "
        f"history <= {prompts.max_history}, {result['train_rows']} training rows (training interactions only)",
        f"- **Hyper-parameters:** lr {args.learning_rate}, batch {args.per_device_train_batch_size} x "
        f"{args.gradient_accumulation_steps} accumulation, "
        + (f"{args.max_steps} steps, " if args.max_steps > 0 else f"{args.num_train_epochs} epochs, ")
        + f"max_length {args.max_length}, seed {args.seed}",
        f"- **Training:** {result['train_seconds']} s ({'bf16 autocast' if result['bf16'] else 'fp32'}, "
        f"{result['threads']} CPU threads per process); loss "
        + (f"{result['loss_history'][0][1]:.3f} (step {result['loss_history'][0][0]}) -> "
           f"{result['loss_history'][-1][1]:.3f} (step {result['loss_history'][-1][0]})"
           if result["loss_history"] else "not logged"),
    ]
    if "valid_metrics" in result:
        k = rec.ranking_k
        m = result["valid_metrics"]
        lines += ["", f"## Validation ({result['valid_users']} sampled users, full ranking by trie-constrained "
                  f"beam search, history excluded)", "", "| metric | value | 95% CI |", "|---|---|---|"]
        lines += [f"| {name} | {m[name]['value']:.4f} | [{m[name]['ci95'][0]:.4f}, {m[name]['ci95'][1]:.4f}] |"
                  for name in (f"ndcg@{k}", f"recall@{k}", f"mrr@{k}")]
        start = [e for e in result.get("ranking_evals", []) if e["step"] == 0]
        if start:
            lines.append(f"\nBefore training (same users): ndcg@{k} {start[0][f'ranking/ndcg@{k}']:.4f}, "
                         f"recall@{k} {start[0][f'ranking/recall@{k}']:.4f}.")
    lines += ["", "Evaluate on the test split: `llmrec eval rank --checkpoint THIS_FOLDER --data DATASET "
              "--output REPORT`."]
    (out / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
