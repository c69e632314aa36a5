"""Uncertainty of averaged metrics: percentile bootstrap over users, and a paired test between two runs."""

from __future__ import annotations

import numpy as np


def bootstrap_ci(
    per_user: np.ndarray, *, n_resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (Efron & Tibshirani, 1993, ch. 13), resampling users."""
    values = np.asarray(per_user, np.float64)
    if values.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, 100):  # chunks bound memory at 100 x U indices
        idx = rng.integers(0, values.size, (min(100, n_resamples - start), values.size))
        means[start : start + len(idx)] = values[idx].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(lo), float(hi)


def paired_permutation_test(a: np.ndarray, b: np.ndarray, *, n_resamples: int = 10000, seed: int = 0) -> float:
    """Two-sided p-value that runs a and b have the same mean, per-user values paired (sign flips)."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    if d.size == 0:
        return float("nan")
    observed = abs(d.mean())
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(n_resamples, d.size))
    null = np.abs((signs * d).mean(axis=1))
    return float((1 + (null >= observed - 1e-12).sum()) / (n_resamples + 1))
