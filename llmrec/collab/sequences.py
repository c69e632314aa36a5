"""Integer views of a prepared dataset for the classic models: catalog positions, user sequences, histories.

Items are named by their catalog position (0..N-1, the row of `dataset.items`), so every model's score
row (N,) lines up with the catalog, and a model folder fits a dataset iff the catalog fingerprints match.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc

from llmrec.data.dataset import PreparedDataset
from llmrec.errors import LlmrecError
from llmrec.indexing.item_index import catalog_fingerprint
from llmrec.prompts.rows import item_positions, user_starts


@dataclass
class SplitHistories:
    """One row per user of a held-out split: the items before the target (time order) and the target."""

    users: list[str]
    histories: list[np.ndarray]  # each (H,) catalog positions
    targets: np.ndarray  # (U,) catalog positions


@dataclass
class CollabData:
    item_ids: list[str]
    fingerprint: str
    users: list[str]  # users with training interactions, in dataset order
    train: list[np.ndarray]  # per user (n,) catalog positions of training items, time order

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @classmethod
    def from_dataset(cls, dataset: PreparedDataset) -> CollabData:
        inter = dataset.interactions
        train = inter.filter(pc.equal(inter["split"], "train"))
        if train.num_rows == 0:
            raise LlmrecError(f"{dataset.path}: the training split is empty; nothing to fit")
        pos = item_positions(train, dataset.items)  # (T,)
        users = train["user_id"].to_numpy(zero_copy_only=False)
        starts = np.flatnonzero(user_starts(users) == np.arange(len(users)))
        bounds = np.append(starts, len(users))
        return cls(item_ids=dataset.items["item_id"].to_pylist(), fingerprint=catalog_fingerprint(dataset.items),
                   users=users[starts].astype(str).tolist(),
                   train=[pos[a:b] for a, b in zip(bounds[:-1], bounds[1:])])

    def split(self, dataset: PreparedDataset, split: str) -> SplitHistories:
        code = {item: c for c, item in enumerate(self.item_ids)}
        rows = dataset.histories(split).to_pylist()
        return SplitHistories(users=[r["user_id"] for r in rows],
                              histories=[np.array([code[i] for i in r["history"]], np.int64) for r in rows],
                              targets=np.array([code[r["target"]] for r in rows], np.int64))


def history_mask(histories: list[np.ndarray], n_items: int) -> np.ndarray:
    """(U, N) bool, True where the item is in the user's history (and must never be recommended)."""
    mask = np.zeros((len(histories), n_items), bool)
    for row, h in enumerate(histories):
        mask[row, h] = True
    return mask
