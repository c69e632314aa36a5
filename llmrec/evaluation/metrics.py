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


def long_tail(popularity: np.ndarray, head_share: float = 0.2) -> np.ndarray:
    """(n_items,) bool: True for long-tail items. The short head is the `head_share` most popular items by
    training count (the Pareto 20%, Abdollahpouri et al., 2019); ties at the boundary go to the head."""
    n_head = int(np.ceil(head_share * popularity.shape[0]))
    threshold = np.sort(popularity)[::-1][n_head - 1] if n_head else np.inf
    return popularity < threshold


def beyond_accuracy(ranked: np.ndarray, popularity: np.ndarray, ks: Sequence[int], n_users: int | None = None,
                    target_codes: np.ndarray | None = None, head_share: float = 0.2) -> dict[str, float | None]:
    """Catalog-level metrics of the recommended lists at each K.

    ranked: (U, K) item codes, -1 where no valid item stands. popularity: (n_items,) training counts.
    n_users: users in the training data (novelty's p(seen | i)); default U. target_codes: (U,) held-out item
    codes (-2 when not in the catalog), needed for popreo.
    - coverage@k: share of the catalog recommended to anyone (RecBole ItemCoverage).
    - gini@k: Gini index of how often each catalog item is recommended, zero counts included
      (RecBole GiniIndex): sum_i (2i - n - 1) c_(i) / (n sum c), counts sorted ascending.
    - arp@k: average popularity of the recommended items, per list, averaged over users (Abdollahpouri
      et al., 2019), on training counts.
    - novelty@k: expected popularity complement, EPC (Vargas & Castells, 2011, Eq. 9 without relevance):
      sum_r disc(r) (1 - pop_i / n_users) / sum_r disc(r), disc(r) = 1 / log2(r + 1), empty positions 0.
    - aclt@k: average number of long-tail items per list (Abdollahpouri et al., 2019; see `long_tail`).
    - popreo@k: popularity-opportunity bias (Zhu et al., 2021, "Popularity-Opportunity Bias in
      Collaborative Filtering", Eq. 4): std / mean over {head, tail} of P(target in top-k | target's group);
      0 is equal opportunity. None when it is undefined (no hits, or one group has no targets).
    """
    n_items = popularity.shape[0]
    n_users = n_users or len(ranked)
    tail = long_tail(popularity, head_share)
    out: dict[str, float | None] = {}
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
        discount = 1.0 / np.log2(np.arange(2, k + 2))  # (k,)
        novelty = np.where(valid, 1.0 - pop / n_users, 0.0)  # (U, k)
        out[f"novelty@{k}"] = float((novelty @ discount / discount.sum()).mean()) if len(top) else 0.0
        out[f"aclt@{k}"] = float((valid & tail[np.maximum(top, 0)]).sum(1).mean()) if len(top) else 0.0
        if target_codes is not None:
            out[f"popreo@{k}"] = _popreo(top, target_codes, tail)
    return out


def _popreo(top: np.ndarray, target_codes: np.ndarray, tail: np.ndarray) -> float | None:
    known = target_codes >= 0
    hit = (top == target_codes[:, None]).any(1)[known]  # (U',)
    in_tail = tail[target_codes[known]]  # (U',)
    if in_tail.all() or not in_tail.any():
        return None
    p = np.array([hit[~in_tail].mean(), hit[in_tail].mean()])  # P(hit | head), P(hit | tail)
    return float(p.std() / p.mean()) if p.mean() > 0 else None


def rating_errors(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """RMSE and MAE of rating predictions (RecBole RMSE/MAE)."""
    err = np.asarray(predicted, np.float64) - np.asarray(truth, np.float64)  # (N,)
    if err.size == 0:
        raise ValueError("no rating predictions to score")
    return {"rmse": float(np.sqrt((err**2).mean())), "mae": float(np.abs(err).mean())}


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC of yes/no predictions (TALLRec's metric): scores are P(yes) or any monotone score."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels, bool)
    if labels.all() or not labels.any():
        raise ValueError("AUC needs both positive and negative labels")
    return float(roc_auc_score(labels, np.asarray(scores, np.float64)))
