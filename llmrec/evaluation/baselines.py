"""Reference rankers every report should be compared with: most popular (training counts) and random."""

from __future__ import annotations

import numpy as np

from llmrec.data.dataset import PreparedDataset


def baseline_rankings(dataset: PreparedDataset, split: str, k: int, method: str, seed: int = 0) -> list[dict]:
    """Top-k lists per user of `split`, never repeating an item of the user's history."""
    items = np.asarray(dataset.items["item_id"].to_pylist(), dtype=object)
    rng = np.random.default_rng(seed)
    if method == "most_popular":  # stable: ties keep catalog order, so runs are reproducible
        order = np.argsort(-dataset.items["popularity"].to_numpy(), kind="stable")
    elif method != "random":
        raise ValueError(f"unknown baseline {method!r}; valid: most_popular, random")
    records = []
    for row in dataset.histories(split).to_pylist():
        seen = set(row["history"])
        ranked = items[order] if method == "most_popular" else items[rng.permutation(len(items))]
        top = [i for i in ranked[: k + len(seen)] if i not in seen][:k]
        records.append({"user_id": row["user_id"], "ranked_items": top})
    return records
