"""Which (user, history, target) rows exist, before any text is rendered.

All interactions are kept sorted by user, then time (as the dataset folder stores them), so a row is a
target position plus the slice [start, end) of earlier positions that forms its history. A row's
history only ever holds interactions before its target, and training rows target training interactions
only, so no valid or test item can leak into training by construction.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llmrec.errors import LlmrecError


def user_starts(users: np.ndarray) -> np.ndarray:
    """(N,) user ids sorted by user -> (N,) position of each row's user's first row."""
    new = np.concatenate([[True], users[1:] != users[:-1]])  # (N,)
    first = np.flatnonzero(new)
    return first[np.cumsum(new) - 1]


def window_rows(interactions: pa.Table, split: str, max_history: int, min_history: int = 1) -> dict[str, np.ndarray]:
    """Target positions in `split` with their history slices.

    train: every training interaction with at least `min_history` earlier ones (sliding windows).
    valid/test: each user's first interaction in that split (one row per user).
    """
    users = interactions["user_id"].to_numpy(zero_copy_only=False)
    splits = interactions["split"].to_numpy(zero_copy_only=False)
    ustart = user_starts(users)
    pos = np.arange(len(users))
    in_split = splits == split
    if split == "train":
        keep = in_split & (pos - ustart >= min_history)
    else:
        first_in_split = in_split & np.concatenate([[True], ~((users[1:] == users[:-1]) & in_split[:-1])])
        keep = first_in_split
    target = pos[keep]
    return {"target": target, "start": np.maximum(ustart[keep], target - max_history), "end": target}


def sample_negatives(
    items: np.ndarray, ustart: np.ndarray, target: np.ndarray, n_items: int, n: int, rng: np.random.Generator
) -> np.ndarray:
    """(R,) target positions -> (R, n) item codes the user had not interacted with up to the target.

    Rejection sampling against the user's items up to and including the target (never later ones, which
    would leak the future into training rows)."""
    out = np.empty((len(target), n), np.int64)
    for r, t in enumerate(target):
        seen = set(items[ustart[t] : t + 1].tolist())
        if len(seen) + n > n_items:
            raise LlmrecError(f"cannot sample {n} negatives for a row of user position {ustart[t]}: the catalog has "
                              f"only {n_items - len(seen)} items that user has not seen (lower --n_candidates or "
                              "--n_negatives)")
        picked: list[int] = []
        while len(picked) < n:
            for c in rng.integers(0, n_items, 2 * n).tolist():
                if c not in seen:
                    seen.add(c)
                    picked.append(c)
                    if len(picked) == n:
                        break
        out[r] = picked
    return out


def item_positions(interactions: pa.Table, items: pa.Table) -> np.ndarray:
    """(N,) catalog position of each interaction's item."""
    return pc.index_in(interactions["item_id"], value_set=items["item_id"]).to_numpy().astype(np.int64)
