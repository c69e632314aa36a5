"""Rank catalog items with a causal LM (trie-constrained beam search) and score them like any rankings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from llmrec.data.dataset import PreparedDataset
from llmrec.evaluation.rank import Evaluation, RankEvalConfig, evaluate
from llmrec.generation.recommend import recommend
from llmrec.indexing.item_index import ItemIndex
from llmrec.indexing.trie import ItemTrie


def sample_positions(total: int, n: int | None, seed: int = 0) -> np.ndarray:
    """Sorted positions of a seeded sample of `n` of `total` users (all when n is None or >= total).
    Checkpoint and zero-shot evaluation both sample users through here, so the same n and seed pick the
    same users and their reports pair up in `llmrec eval compare`."""
    if n is None or n >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, n, replace=False))


def sample_rows(rows: Any, n: int | None, seed: int = 0) -> Any:
    """A seeded sample of `n` evaluation rows (one per user), or all of them."""
    return rows if n is None or n >= len(rows) else rows.select(sample_positions(len(rows), n, seed))


def model_rankings(model: Any, tokenizer: Any, trie: ItemTrie, rows: Any, k: int, batch_size: int = 16,
                   progress: bool = True) -> list[dict[str, Any]]:
    """Evaluation rows (prompt, user_id, target_item_id) -> rankings records, as rankings.jsonl holds them.
    `trie` is `ItemIndex.trie(tokenizer)`: built once by the caller, reused across evaluations."""
    ranked, scores = recommend(model, tokenizer, rows["prompt"], trie, k, batch_size, progress)
    return [{"user_id": u, "ranked_items": r, "scores": s, "target_item_id": t}
            for u, r, s, t in zip(rows["user_id"], ranked, scores, rows["target_item_id"])]


def evaluate_model(model: Any, tokenizer: Any, trie: ItemTrie, dataset: PreparedDataset, rows: Any,
                   config: RankEvalConfig, batch_size: int = 16, progress: bool = True) -> Evaluation:
    """Rank for every row's user and score against the split (only those users when rows are a sample)."""
    records = model_rankings(model, tokenizer, trie, rows, max(config.ks), batch_size, progress)
    return evaluate(dataset, records, config, users=set(rows["user_id"]))


def checkpoint_rankings(config: RankEvalConfig, dataset: PreparedDataset) -> list[dict[str, Any]]:
    """Load a recipes/sft.py output folder and rank items for the users of `config.split`, rendering the
    prompts exactly as in training (the settings are in its llmrec.json)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmrec.artifacts import read_json
    from llmrec.generation.recommend import pick_device
    from llmrec.prompts.build import PromptBuildConfig, build_prompt_datasets

    folder = Path(config.checkpoint)
    settings = read_json(folder / "llmrec.json")
    index = ItemIndex.load(folder / "item_index")
    index.check_dataset(dataset.items, config.data)
    prompts = PromptBuildConfig(**{**settings["prompts"], "data": config.data, "max_train_rows": 1})
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if (folder / "adapter_config.json").exists():
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    else:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.to(pick_device())
    rows = build_prompt_datasets(prompts, dataset, index, tokenizer if prompts.max_prompt_tokens else None)
    rows = sample_rows(rows[config.split], config.max_users, config.seed)
    return model_rankings(model, tokenizer, index.trie(tokenizer), rows, max(config.ks), config.batch_size)
