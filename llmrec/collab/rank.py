"""Top-k lists from any classic model's full-catalog scores, with the user's history masked out."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from llmrec.collab.base import CollabModel
from llmrec.collab.sequences import CollabData, SplitHistories
from llmrec.evaluation.metrics import ranking_metrics


@torch.no_grad()
def top_k(model: CollabModel, users: list[str], histories: list[np.ndarray], k: int,
          batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """-> (U, k) catalog positions, best first, and their (U, k) scores; history items never appear."""
    was_training = model.training
    model.eval()
    items, scores = [], []
    for a in range(0, len(users), batch_size):
        hist = histories[a : a + batch_size]
        s = model.score(users[a : a + batch_size], hist).float()  # (B, N)
        for row, h in enumerate(hist):
            s[row, torch.from_numpy(h)] = -torch.inf
        top = s.topk(min(k, s.shape[1]), dim=1)
        items.append(top.indices.cpu().numpy()), scores.append(top.values.cpu().numpy())
    model.train(was_training)
    return np.concatenate(items), np.concatenate(scores)


def split_records(model: CollabModel, data: CollabData, split: SplitHistories, k: int) -> list[dict[str, Any]]:
    """rankings.jsonl records (user_id, ranked_items, scores, target_item_id) for every user of a split;
    a list is shorter than k only when the user has fewer than k unseen items."""
    items, scores = top_k(model, split.users, split.histories, k)
    records = []
    for user, row, values, target in zip(split.users, items, scores, split.targets):
        keep = np.isfinite(values)  # -inf marks history items, reached only when k exceeds the unseen items
        records.append({"user_id": user, "ranked_items": [data.item_ids[i] for i in row[keep]],
                        "scores": [round(float(x), 6) for x in values[keep]], "target_item_id": data.item_ids[target]})
    return records


def ndcg_at_k(model: CollabModel, split: SplitHistories, k: int = 10) -> float:
    """Mean NDCG@k with one held-out item per user: the early-stopping signal. Ties break as `top_k` breaks
    them, so it equals what `llmrec eval rank` reports."""
    items, _ = top_k(model, split.users, split.histories, k)
    hits = items == split.targets[:, None]  # (U, k)
    return float(ranking_metrics(hits, np.ones(len(hits)), [k])[f"ndcg@{k}"].mean())
