"""EASE: a closed-form item-item linear autoencoder (Steck, "Embarrassingly Shallow Autoencoders for
Sparse Data", WWW 2019).

With X the (U, N) binary user-item matrix of the training split and G = X^T X + lambda I, P = G^-1, the
weights are B_ij = -P_ij / P_jj for i != j and B_jj = 0 (the paper's Eq. 8); a user's scores are x_u B.
Cost: one dense N x N inverse, fine up to a few tens of thousands of items.

With item side information S (N, E) and weight alpha, G = X^T X + alpha S S^T + lambda I: collective EASE
(Jeunen et al., RecSys 2020, Sec. 3), the closed form over X stacked with sqrt(alpha) S^T as extra rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from llmrec.collab.base import CollabModel


def binary_matrix(rows: list[np.ndarray], n_items: int) -> sp.csr_matrix:
    """(U, N) with a 1 for every item in each row's list (repeats count once)."""
    indptr = np.cumsum([0, *map(len, rows)])
    indices = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    x = sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(len(rows), n_items))
    x.sum_duplicates()
    x.data[:] = 1.0
    return x


def grams(train: list[np.ndarray], n_items: int, side: np.ndarray | None = None
          ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(N, N) float64 X^T X of the training users' binary rows, and S S^T of the side information (or None)."""
    x = binary_matrix(train, n_items)
    s = None if side is None else torch.from_numpy(side).double()  # (N, E)
    return torch.from_numpy((x.T @ x).toarray()), None if s is None else s @ s.T


class EASE(CollabModel):
    kind = "ease"
    trains_by_gradient = False

    def __init__(self, n_items: int, lam: float = 100.0, side_weight: float = 0.0):
        super().__init__()
        self.n_items, self.lam, self.side_weight = n_items, lam, side_weight
        self.register_buffer("weights", torch.zeros(n_items, n_items))  # B: (N, N)

    def hyperparameters(self) -> dict[str, Any]:
        return {"n_items": self.n_items, "lam": self.lam, "side_weight": self.side_weight}

    def fit(self, train: list[np.ndarray], side: np.ndarray | None = None) -> EASE:
        """`side`: (N, E) item side information, weighted by `side_weight` (0 or None: plain EASE)."""
        return self.fit_grams(*grams(train, self.n_items, side))

    def fit_grams(self, xtx: torch.Tensor, sst: torch.Tensor | None = None) -> EASE:
        """From X^T X and S S^T (`grams`), so a grid over lambda and alpha computes them once."""
        gram = xtx + self.side_weight * sst if sst is not None and self.side_weight else xtx.clone()  # (N, N)
        gram.diagonal().add_(self.lam)
        p = torch.linalg.inv(gram)
        b = -p / p.diagonal()[None, :]  # column j divided by P_jj
        b.diagonal().zero_()
        self.weights = b.float().to(self.weights.device)
        return self

    @torch.no_grad()
    def score(self, users: list[str], histories: list[np.ndarray]) -> torch.Tensor:
        x = torch.from_numpy(binary_matrix(histories, self.n_items).toarray()).float()  # (U, N)
        return x.to(self.weights.device) @ self.weights

    @torch.no_grad()
    def prefix_scores(self, sequence: np.ndarray) -> torch.Tensor:
        first = np.zeros(len(sequence), bool)  # a repeated item adds nothing to the binary row
        first[np.unique(sequence, return_index=True)[1]] = True
        rows = self.weights[torch.from_numpy(sequence)] * torch.from_numpy(first)[:, None]  # (n, N)
        return rows.cumsum(0)
