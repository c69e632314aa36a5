"""Rejected items for preference rows: the negative strategies of the recommendation-DPO literature.

Every strategy returns, per training row, `n` catalog items that are neither the row's target nor any item
the user interacted with in the training split (the whole training sequence, not only the prompt's
window: a later positive is no negative). Validation and test items are never looked at, so a held-out
target can be drawn as a negative by chance, as any unseen item can.

- random       uniform over the allowed items (DPO-for-recommendation baselines; S-DPO's sampling).
- popularity   proportional to training-split counts: popular items the user skipped (hard negatives).
- candidates   uniform among the row's candidate list (the `candidates` family's), or else among a classic
               model's top `pool_size` for the row's history (S-DPO's in-candidate-list negatives).
- self_play    the current LLM's own top generations that are not the target (SPRec, Gao et al. 2025):
               recomputed each round, so each round pushes down what the model now recommends wrongly.
- reward_model the current LLM's top `pool_size` generations scored by a classic model (SASRec), the n
               lowest-scored ones rejected (OneRec-style iterative preference alignment).
Where a row's pool holds fewer than n allowed items, the rest are drawn at random and counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from llmrec.collab.base import CollabModel
from llmrec.collab.sequences import CollabData
from llmrec.errors import LlmrecError

STRATEGIES = ("random", "popularity", "candidates", "self_play", "reward_model")
NEEDS_POLICY = ("self_play", "reward_model")
NEEDS_SCORER = ("reward_model",)
POOLED = ("candidates", "self_play", "reward_model")  # strategies that pick from a per-row pool (pool_size)

# rows -> per row, the policy's ranked item ids (trie-constrained beam search over the catalog)
Generate = Callable[[Any, int], list[list[str]]]


@dataclass
class NegativeSource:
    """What the strategies draw from: the catalog, the users' training items and, for some, models."""

    data: CollabData
    scorer: CollabModel | None = None  # candidates (rows without a list) and reward_model
    generate: Generate | None = None  # self_play and reward_model
    code: dict[str, int] = field(init=False)
    seen: dict[str, set[int]] = field(init=False)
    popularity: np.ndarray = field(init=False)  # (N,) training-split counts

    def __post_init__(self) -> None:
        self.code = {item: c for c, item in enumerate(self.data.item_ids)}
        self.seen = {u: set(seq.tolist()) for u, seq in zip(self.data.users, self.data.train)}
        self.popularity = np.bincount(np.concatenate(self.data.train), minlength=self.data.n_items).astype(float)


def excluded_items(rows: Any, source: NegativeSource) -> list[set[int]]:
    """Per row: the target and every training item of the user (catalog positions)."""
    return [source.seen.get(u, set()) | {source.code[t]} | {source.code[i] for i in h}
            for u, t, h in zip(rows["user_id"], rows["target_item_id"], rows["history_item_ids"])]


def draw(weights: np.ndarray, excluded: set[int], n: int, rng: np.random.Generator) -> list[int]:
    """n distinct catalog positions outside `excluded`, drawn proportional to `weights` (N,)."""
    allowed = np.setdiff1d(np.arange(len(weights)), np.fromiter(excluded, np.int64))
    p = weights[allowed]
    if np.count_nonzero(p) < n:
        raise LlmrecError(f"cannot draw {n} negatives: only {np.count_nonzero(p)} items unseen by that user can be "
                          "drawn (lower n_negatives)")
    return rng.choice(allowed, n, replace=False, p=p / p.sum()).tolist()


def first_allowed(pool: list[int], excluded: set[int], n: int) -> list[int]:
    """The first n distinct items of `pool` (best first) outside `excluded`."""
    out: list[int] = []
    for c in pool:
        if c not in excluded and c not in out:
            out.append(c)
            if len(out) == n:
                break
    return out


def pick_negatives(strategy: str, rows: Any, n: int, source: NegativeSource, rng: np.random.Generator,
                   pool_size: int = 10) -> tuple[list[list[str]], dict[str, int]]:
    """-> (per row, n rejected item ids; counts: rows and `filled_at_random` items)."""
    if strategy not in STRATEGIES:
        raise LlmrecError(f"unknown negative strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if strategy in NEEDS_POLICY and source.generate is None:
        raise LlmrecError(f"negatives {strategy} need the model being aligned to generate")
    if strategy in NEEDS_SCORER and source.scorer is None:
        raise LlmrecError(f"negatives {strategy} need a classic model folder (--negatives_model)")
    n_items = source.data.n_items
    uniform = np.ones(n_items)
    excluded = excluded_items(rows, source)
    pools = candidate_pools(strategy, rows, source, pool_size, excluded)
    out, filled = [], 0
    for r, ex in enumerate(excluded):
        if strategy in ("random", "popularity"):
            picked = draw(source.popularity if strategy == "popularity" else uniform, ex, n, rng)
        else:
            allowed = first_allowed(pools[r], ex, len(pools[r]) if strategy == "candidates" else n)
            if strategy == "candidates" and len(allowed) > n:
                allowed = rng.choice(allowed, n, replace=False).tolist()
            picked = allowed[:n]
            if len(picked) < n:  # too small a pool: the rest uniform, never silently fewer
                filled += n - len(picked)
                picked += draw(uniform, ex | set(picked), n - len(picked), rng)
        out.append([source.data.item_ids[c] for c in picked])
    return out, {"rows": len(out), "filled_at_random": filled}


def candidate_pools(strategy: str, rows: Any, source: NegativeSource, pool_size: int,
                    excluded: list[set[int]]) -> list[list[int]]:
    """Per row, the ordered pool a strategy picks from (empty for random and popularity). A classic model's
    candidate list is its top `pool_size` of the items the row may reject, as a retriever's list is."""
    code = source.code
    if strategy in ("random", "popularity"):
        return [[] for _ in range(len(rows))]
    if strategy == "candidates":
        lists = [[code[i] for i in c] for c in rows["candidate_item_ids"]]
        missing = [r for r, c in enumerate(lists) if not c]
        if missing and source.scorer is None:
            raise LlmrecError("negatives candidates: rows without a candidate list need a classic model "
                              "(--negatives_model) to make one")
        if missing:
            histories = [np.array([code[i] for i in rows["history_item_ids"][r]], np.int64) for r in missing]
            widest = pool_size + max(len(excluded[r]) for r in missing)
            for r, top in zip(missing, top_items(source.scorer, [rows["user_id"][r] for r in missing], histories,
                                                 widest)):
                lists[r] = first_allowed(top, excluded[r], pool_size)
        return lists
    generated = [[code[i] for i in g if i in code] for g in source.generate(rows, pool_size)]
    if strategy == "self_play":
        return generated
    histories = [np.array([code[i] for i in h], np.int64) for h in rows["history_item_ids"]]
    return [lowest_scored(source.scorer, u, h, g) for u, h, g in zip(rows["user_id"], histories, generated)]


def top_items(model: CollabModel, users: list[str], histories: list[np.ndarray], k: int) -> list[list[int]]:
    """A classic model's top k catalog positions per user, from these histories."""
    with torch.no_grad():
        scores = model.score(users, histories)  # (U, N)
    return scores.topk(min(k, scores.shape[1]), dim=1).indices.tolist()


def lowest_scored(model: CollabModel, user: str, history: np.ndarray, items: list[int]) -> list[int]:
    """`items` ordered by a classic model's score for this user, lowest first (the reward model's rejects)."""
    if not items:
        return []
    with torch.no_grad():
        scores = model.score_items([user], [history], np.array([items]))[0]  # (C,)
    return [items[i] for i in torch.argsort(scores).tolist()]
