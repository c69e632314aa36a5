"""Seeded samples of evaluation users, shared by checkpoint, training-time and zero-shot evaluation."""

from __future__ import annotations

from typing import Any

import numpy as np


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
