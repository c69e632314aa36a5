"""Ranking rewards for GRPO over catalog items, in TRL's reward-function shape.

TRL calls each reward as `f(prompts, completions, completion_ids, **columns)` with one entry per rollout;
the columns are the dataset's (`target_item_id`, `user_id`, `history_item_ids`) plus what the rollout adds
(`item_id`: the rolled-out item, `beam_rank`: its 0-based rank in the group's beam). A group is the G
consecutive rollouts of one prompt (`rollout.TrieRollout` guarantees whole groups per process), so rewards
that look at the whole group (rank-aware, collaborative) read it by position. TRL then weights the rewards
(`reward_weights`), sums them and normalises the sum per group into advantages.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from llmrec.collab.base import CollabModel
from llmrec.errors import LlmrecError

REWARDS = ("hit", "rank_aware", "collaborative", "semantic")


def groups(n: int, size: int) -> list[range]:
    if n % size:
        raise LlmrecError(f"{n} rollouts do not split into groups of {size}")
    return [range(s, s + size) for s in range(0, n, size)]


def hit(item_id: list[str], target_item_id: list[str], **_: Any) -> list[float]:
    """1 if the rolled-out item is the user's next item, else 0 (MiniOneRec's rule-based reward)."""
    return [float(i == t) for i, t in zip(item_id, target_item_id)]


class RankAware:
    """MiniOneRec's rank-aware reward (arXiv 2510.24431; an NDCG-style penalty): in a group that contains the
    target, a wrong item at beam rank i (0-based) gets

        -(1 / log2(i + 2)) / sum_{j < G} 1 / log2(j + 2)

    so confident mistakes above the hit cost most; the hit itself and every rollout of a group without a hit
    get 0. Used with `hit`, it turns a group's reward from "found it" into "found it and ranked it first".
    Logs `hit_groups`, the share of groups that contain the target."""

    __name__ = "rank_aware"

    def __init__(self, group_size: int):
        self.group_size = group_size
        self.norm = sum(1 / np.log2(j + 2) for j in range(group_size))

    def __call__(self, item_id: list[str], target_item_id: list[str], beam_rank: list[int],
                 log_metric: Any = None, **_: Any) -> list[float]:
        out = [0.0] * len(item_id)
        hits = 0
        for group in groups(len(item_id), self.group_size):
            if not any(item_id[i] == target_item_id[i] for i in group):
                continue
            hits += 1
            for i in group:
                if item_id[i] != target_item_id[i]:
                    out[i] = -(1 / np.log2(beam_rank[i] + 2)) / self.norm
        if log_metric is not None:
            log_metric("hit_groups", hits / (len(item_id) // self.group_size))
        return out


def standardise(values: np.ndarray) -> np.ndarray:
    """(n,) -> zero mean, unit standard deviation (all zero when the values are equal)."""
    std = values.std()
    return (values - values.mean()) / std if std > 0 else np.zeros_like(values)


class Collaborative:
    """A classic model's (SASRec, EASE) score of the rolled-out item for this user, standardised within the
    group (the models' score scales differ). A dense reward where hits are rare: items the collaborative model
    also ranks high for this user are pushed up, as a reward model from collaborative signals does."""

    __name__ = "collaborative"

    def __init__(self, model: CollabModel, item_ids: list[str], group_size: int):
        self.model, self.group_size = model, group_size
        self.code = {item: c for c, item in enumerate(item_ids)}

    def __call__(self, item_id: list[str], user_id: list[str], history_item_ids: list[list[str]],
                 **_: Any) -> list[float]:
        out = np.zeros(len(item_id))
        spans = groups(len(item_id), self.group_size)
        users = [user_id[g.start] for g in spans]
        histories = [np.array([self.code[i] for i in history_item_ids[g.start]], np.int64) for g in spans]
        items = np.array([[self.code[item_id[i]] for i in g] for g in spans], np.int64)  # (groups, G)
        with torch.no_grad():
            scores = self.model.score_items(users, histories, items).float().cpu().numpy()  # (groups, G)
        for g, row in zip(spans, scores):
            out[g.start : g.stop] = standardise(row)
        return out.tolist()


class Semantic:
    """Cosine similarity between the rolled-out item's and the target's text embeddings (sentence-transformers,
    the catalog's item text): a near miss of the same kind earns part of a hit, a dense reward where hits
    are rare."""

    __name__ = "semantic"

    def __init__(self, vectors: np.ndarray, item_ids: list[str]):
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)
        self.vectors = torch.from_numpy(unit.astype(np.float32))  # (N, D)
        self.code = {item: c for c, item in enumerate(item_ids)}

    def __call__(self, item_id: list[str], target_item_id: list[str], **_: Any) -> list[float]:
        a = self.vectors[[self.code[i] for i in item_id]]  # (n, D)
        b = self.vectors[[self.code[t] for t in target_item_id]]  # (n, D)
        return (a * b).sum(-1).tolist()
