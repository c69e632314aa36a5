"""BPR-MF: matrix factorisation trained with Bayesian Personalized Ranking (Rendle et al., UAI 2009).

For a training pair (u, i) and an item j the user never interacted with in training, the loss is
-ln sigmoid(x_ui - x_uj) with x_ui = <p_u, q_i> (the paper's BPR-Opt criterion, Eq. 2 with the L2 prior as
weight decay); negatives are drawn uniformly and never positives of that user (`sample_negatives`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llmrec.collab.base import CollabModel
from llmrec.errors import LlmrecError


def sample_negatives(users: np.ndarray, positives: np.ndarray, n_items: int, rng: np.random.Generator) -> np.ndarray:
    """(P,) user rows -> (P,) items drawn uniformly among those the user has no training interaction with.

    `positives` holds the sorted keys user * n_items + item of every training pair; draws that hit one are
    redrawn until none does."""
    neg = rng.integers(0, n_items, len(users))
    bad = np.flatnonzero(np.isin(users * n_items + neg, positives, assume_unique=False))
    while len(bad):
        neg[bad] = rng.integers(0, n_items, len(bad))
        bad = bad[np.isin(users[bad] * n_items + neg[bad], positives)]
    return neg


class BPR(CollabModel):
    kind = "bpr"

    def __init__(self, n_items: int, users: list[str], dim: int = 64):
        super().__init__()
        self.n_items, self.users, self.dim = n_items, list(users), dim
        self.row = {u: r for r, u in enumerate(self.users)}
        self.user_emb = nn.Embedding(len(users), dim)  # (U, D)
        self.item_emb = nn.Embedding(n_items, dim)  # (N, D)
        nn.init.xavier_normal_(self.user_emb.weight)
        nn.init.xavier_normal_(self.item_emb.weight)

    def hyperparameters(self) -> dict[str, Any]:
        return {"n_items": self.n_items, "users": self.users, "dim": self.dim}

    def user_rows(self, users: list[str]) -> torch.Tensor:
        missing = [u for u in users if u not in self.row]
        if missing:
            raise LlmrecError(f"bpr: {len(missing)} users have no training interactions and no embedding "
                              f"(first: {missing[0]})")
        return torch.tensor([self.row[u] for u in users], device=self.device)

    @torch.no_grad()
    def score(self, users: list[str], histories: list[np.ndarray]) -> torch.Tensor:
        return self.user_emb(self.user_rows(users)) @ self.item_emb.weight.T  # (U, N)

    def batches(self, train: list[np.ndarray], rng: np.random.Generator, batch_size: int) -> Iterator[tuple]:
        users = np.repeat(np.arange(len(train)), [len(s) for s in train])  # (P,)
        items = np.concatenate(train)  # (P,)
        positives = np.unique(users * self.n_items + items)
        order = rng.permutation(len(users))
        users, items = users[order], items[order]
        negatives = sample_negatives(users, positives, self.n_items, rng)
        for a in range(0, len(users), batch_size):
            yield tuple(torch.from_numpy(x[a : a + batch_size]) for x in (users, items, negatives))

    def loss(self, users: torch.Tensor, items: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        p = self.user_emb(users)  # (B, D)
        margin = (p * self.item_emb(items)).sum(-1) - (p * self.item_emb(negatives)).sum(-1)  # (B,)
        return -F.logsigmoid(margin).mean()
