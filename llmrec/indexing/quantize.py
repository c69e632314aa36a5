"""Residual quantisation building blocks shared by RQ-KMeans and RQ-VAE.

- `kmeans_codebook`: scikit-learn k-means (mini-batch for large catalogs), robust to fewer points than codes.
- `sinkhorn_assign`: balanced assignment of points to codes (Sinkhorn-Knopp on exp(-d/eps), Cuturi 2013),
  the "uniform semantic mapping" LC-Rec (Zheng et al. 2024, Sec. 3.1.2) applies to the last level so
  items spread evenly over its codes instead of colliding.
- `residual_kmeans`: RQ-KMeans (OneRec, Deng et al. 2025): k-means on x, then on the residual, L times.
- `disambiguate`: TIGER's (Rajput et al. 2023, Sec. 3.1) extra level that numbers items sharing a code
  tuple, making every item's code unique.
- `codebook_stats`: per-level usage and perplexity exp(H(p)) of the code distribution.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.exceptions import ConvergenceWarning

MINIBATCH_ABOVE = 200_000  # points; full k-means above this takes minutes per level on a laptop CPU


def kmeans_codebook(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """(N, D) points -> (k, D) centroids. With fewer points than k, the spare codes copy random points."""
    k_fit = min(k, len(x))
    if len(x) > MINIBATCH_ABOVE:
        model = MiniBatchKMeans(k_fit, random_state=seed, batch_size=8192, n_init=1, max_iter=50)
    else:
        model = KMeans(k_fit, random_state=seed, n_init=1, max_iter=100)
    with warnings.catch_warnings():
        # Fewer distinct points than codes (duplicate item texts): k-means returns repeated centroids,
        # which is harmless here; the disambiguation level separates the items later.
        warnings.simplefilter("ignore", ConvergenceWarning)
        centroids = model.fit(x).cluster_centers_.astype(np.float32)  # (k_fit, D)
    if k_fit < k:
        spare = np.random.default_rng(seed).choice(len(x), k - k_fit)
        centroids = np.concatenate([centroids, x[spare].astype(np.float32)])
    return centroids


def sinkhorn_assign(dist: torch.Tensor, eps: float = 0.003, iters: int = 100) -> torch.Tensor:
    """(N, K) distances -> (N,) codes, each code receiving about N/K points.

    Solves the entropic optimal-transport plan Q = diag(u) exp(-d/eps) diag(v) with row sums 1/N and
    column sums 1/K (log-domain Sinkhorn iterations), then takes each row's argmax.
    """
    lo, hi = dist.amin(), dist.amax()
    d = (dist - (hi + lo) / 2) / ((hi - lo) / 2).clamp(min=1e-12)  # into [-1, 1], so eps is scale-free
    log_q = (-d / eps).float()  # (N, K)
    n, k = log_q.shape
    for _ in range(iters):
        log_q -= _logsumexp(log_q, dim=0) + math.log(k)  # columns sum to 1/K
        log_q -= _logsumexp(log_q, dim=1) + math.log(n)  # rows sum to 1/N
    return log_q.argmax(dim=1)


def _logsumexp(x: torch.Tensor, dim: int) -> torch.Tensor:
    """logsumexp with terms below e^-80 of the largest floored there: exp() of very negative numbers
    gives subnormal floats, ~15x slower on CPUs, and such terms change nothing in float32 anyway."""
    m = x.amax(dim=dim, keepdim=True)
    return m + (x - m).clamp_(min=-80.0).exp_().sum(dim=dim, keepdim=True).log_()


def residual_kmeans(
    x: np.ndarray, levels: int, k: int, seed: int = 0, balanced: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) -> codes (N, L) int64 and codebooks (L, K, D); x ~ sum_l codebooks[l][codes[:, l]]."""
    residual = x.astype(np.float32)
    codes, books = [], []
    for level in range(levels):
        book = kmeans_codebook(residual, k, seed + level)  # (K, D)
        dist = torch.cdist(torch.from_numpy(residual), torch.from_numpy(book)) ** 2  # (N, K)
        code = sinkhorn_assign(dist) if balanced else dist.argmin(dim=1)
        code = code.numpy()
        residual = residual - book[code]
        codes.append(code)
        books.append(book)
    return np.stack(codes, axis=1).astype(np.int64), np.stack(books)


def disambiguate(codes: np.ndarray) -> tuple[np.ndarray, float]:
    """Append a level numbering items that share a code tuple (in item order); returns (codes, raw rate).

    The raw collision rate is 1 - unique tuples / items. Without collisions the codes come back unchanged,
    so the extra level exists only when needed; when it does, every item gets it (uniform length).
    """
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    rate = 1.0 - len(counts) / len(codes)
    if rate == 0.0:
        return codes, 0.0
    order = np.argsort(inverse, kind="stable")
    group_start = np.concatenate([[0], np.cumsum(counts)[:-1]])  # first position of each tuple in `order`
    rank = np.empty(len(codes), np.int64)
    rank[order] = np.arange(len(codes)) - group_start[inverse[order]]
    return np.concatenate([codes, rank[:, None]], axis=1), float(rate)


def codebook_stats(codes: np.ndarray, sizes: list[int]) -> list[dict[str, float]]:
    """Per level: share of the codebook used and the perplexity of the code distribution."""
    stats = []
    for level, size in enumerate(sizes):
        counts = np.bincount(codes[:, level], minlength=size)
        p = counts[counts > 0] / counts.sum()
        stats.append(
            {
                "codebook_size": int(size),
                "codebook_usage": float((counts > 0).sum() / size),
                "perplexity": float(np.exp(-(p * np.log(p)).sum())),
            }
        )
    return stats
