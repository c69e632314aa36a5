"""Fusing the retriever's and the LLM's scores over the same candidates (LlamaRec-style two-stage ranking).

fused = z(retriever) + lambda * z(llm), z standardised per user over that user's candidates; lambda is
chosen on validation NDCG@k. lambda = 0 gives back the retriever's order exactly (ties keep its order).
"""

from __future__ import annotations

import numpy as np

from llmrec.evaluation.metrics import ranking_metrics


def standardize(scores: np.ndarray) -> np.ndarray:
    """(U, N) -> (U, N) zero mean, unit variance per row (a constant row becomes 0)."""
    std = scores.std(axis=1, keepdims=True)
    return (scores - scores.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1.0)


def fuse(retriever: np.ndarray, llm: np.ndarray, lam: float) -> np.ndarray:
    """(U, N) scores in the retriever's candidate order -> (U, N) candidate indices, best first. A stable
    sort keeps the retriever's order among equal fused scores."""
    fused = standardize(retriever) + lam * standardize(llm)
    return np.argsort(-fused, axis=1, kind="stable")


def ndcg_of_order(order: np.ndarray, labels: np.ndarray, k: int = 10) -> np.ndarray:
    """(U, N) candidate indices best first, (U,) target index or -1 -> (U,) NDCG@k with one relevant item."""
    hits = order[:, :k] == labels[:, None]  # (U, min(k, N)); a label of -1 never hits
    return ranking_metrics(hits, np.ones(len(hits)), [k])[f"ndcg@{k}"]


def choose_lambda(retriever: np.ndarray, llm: np.ndarray, labels: np.ndarray, grid: list[float],
                  k: int = 10) -> tuple[float, dict[float, float]]:
    """-> the lambda of `grid` with the best mean NDCG@k (the smallest among equals), and every lambda's value."""
    values = {lam: float(ndcg_of_order(fuse(retriever, llm, lam), labels, k).mean()) for lam in grid}
    best = max(values.values())
    return min(lam for lam, v in values.items() if v == best), values
