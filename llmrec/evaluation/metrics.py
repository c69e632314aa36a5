"""Top-K ranking metrics, vectorised over users, with RecBole's definitions (recbole/evaluator/metrics.py).

Inputs are a hit matrix `hits` (U, K): hits[u, r] is True when the item user u was shown at rank r+1 is
relevant, and `n_relevant` (U,): how many relevant items user u has (1 under leave-one-out). Positions
that hold no valid item (short lists, hallucinated items) are simply not hits. Every function returns
per-user values, so callers can average, bootstrap or compare users paired.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def ranking_metrics(hits: np.ndarray, n_relevant: np.ndarray, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Per-user hit, recall, precision, f1, ndcg, mrr and map at each K, keyed like `ndcg@10`."""
    hits = np.asarray(hits, bool)  # (U, Kmax)
    n_rel = np.asarray(n_relevant, np.float64)  # (U,)
    if np.any(n_rel <= 0):
        raise ValueError("every evaluated user needs at least one relevant item")
    if hits.shape[1] < max(ks):  # short lists: the missing positions are misses
        hits = np.pad(hits, ((0, 0), (0, max(ks) - hits.shape[1])))
    ranks = np.arange(1, max(ks) + 1)  # (Kmax,)
    discount = 1.0 / np.log2(ranks + 1)  # DCG: rel_i / log2(i + 1), Jarvelin & Kekalainen (2002)
    cum_hits = np.cumsum(hits, axis=1)  # (U, Kmax)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        h, n_hit = hits[:, :k], cum_hits[:, k - 1]
        recall, precision = n_hit / n_rel, n_hit / k
        ideal = np.cumsum(discount[:k])[np.minimum(n_rel, k).astype(int) - 1]  # (U,) IDCG@k
        first = np.argmax(h, axis=1)  # (U,) 0-based rank of the first hit (0 when there is none)
        out[f"hit@{k}"] = (n_hit > 0).astype(np.float64)
        out[f"recall@{k}"] = recall
        out[f"precision@{k}"] = precision
        out[f"f1@{k}"] = np.divide(
            2 * precision * recall, precision + recall, out=np.zeros_like(recall), where=precision + recall > 0
        )
        out[f"ndcg@{k}"] = (h * discount[:k]).sum(axis=1) / ideal
        out[f"mrr@{k}"] = np.where(n_hit > 0, 1.0 / (first + 1), 0.0)
        # AP@k = sum_i P@i * rel_i / min(n_rel, k), as RecBole's MAP.
        out[f"map@{k}"] = (cum_hits[:, :k] / ranks[:k] * h).sum(axis=1) / np.minimum(n_rel, k)
    return out


def beyond_accuracy(ranked: np.ndarray, popularity: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    """Catalog-level metrics of the recommended lists at each K.

    ranked: (U, K) item codes, -1 where no valid item stands. popularity: (n_items,) training counts.
    - coverage@k: share of the catalog recommended to anyone (RecBole ItemCoverage).
    - gini@k: Gini index of how often each catalog item is recommended, zero counts included
      (RecBole GiniIndex): sum_i (2i - n - 1) c_(i) / (n sum c), counts sorted ascending.
    - arp@k: average popularity of the recommended items, per list, averaged over users (Abdollahpouri
      et al., 2019), on training counts.
    """
    n_items = popularity.shape[0]
    out: dict[str, float] = {}
    for k in ks:
        top = ranked[:, :k]  # (U, k)
        valid = top >= 0
        counts = np.bincount(top[valid], minlength=n_items)  # (n_items,)
        sorted_counts = np.sort(counts)
        idx = np.arange(1, n_items + 1)
        total = sorted_counts.sum()
        out[f"coverage@{k}"] = float((counts > 0).sum() / n_items)
        out[f"gini@{k}"] = float(((2 * idx - n_items - 1) * sorted_counts).sum() / (n_items * total)) if total else 0.0
        pop = np.where(valid, popularity[np.maximum(top, 0)], 0)  # (U, k)
        per_user = np.divide(pop.sum(1), valid.sum(1), out=np.zeros(len(top)), where=valid.sum(1) > 0)
        out[f"arp@{k}"] = float(per_user.mean()) if len(top) else 0.0
    return out
