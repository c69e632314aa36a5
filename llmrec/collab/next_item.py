"""What every next-item sequence model shares (SASRec, the LLM with an item head): left-padded item codes,
windows of long sequences, a cross-entropy at every position, and scoring from a user's newest state.

A subclass says how codes become states (`hidden`) and states become catalog scores (`logits`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from llmrec.collab.base import CollabModel


def windows(sequence: np.ndarray, max_len: int) -> list[np.ndarray]:
    """Cut one sequence into pieces of at most max_len + 1 items, overlapping by one item, so every
    transition (item t -> item t + 1) is a training target exactly once."""
    ends = range(len(sequence), 1, -max_len)
    return [sequence[max(0, end - max_len - 1) : end] for end in ends]


class NextItemModel(CollabModel):
    """Code 0 pads; catalog position c is code c + 1. Position t of a sequence predicts item t + 1."""

    max_len: int
    n_items: int

    def hidden(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, L) codes -> (B, L, D) states; position t sees items 0..t only."""
        raise NotImplementedError

    def logits(self, states: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., N) over catalog items (the padding code is not an item)."""
        raise NotImplementedError

    def pad(self, sequences: list[np.ndarray]) -> torch.Tensor:
        """Catalog positions -> (B, L) codes, left-padded with 0 to the longest, the newest max_len items kept."""
        sequences = [s[-self.max_len :] for s in sequences]
        out = np.zeros((len(sequences), max([1, *map(len, sequences)])), np.int64)
        for row, s in enumerate(sequences):
            if len(s):
                out[row, -len(s) :] = s + 1
        return torch.from_numpy(out).to(self.device)

    def encode_users(self, histories: list[np.ndarray]) -> torch.Tensor:
        return self.hidden(self.pad(histories))[:, -1]  # (U, D)

    @torch.no_grad()
    def score(self, users: list[str], histories: list[np.ndarray]) -> torch.Tensor:
        return self.logits(self.encode_users(histories))  # (U, N)

    @torch.no_grad()
    def prefix_scores(self, sequence: np.ndarray) -> torch.Tensor:
        rows = []
        for piece in reversed(windows(np.append(sequence, 0), self.max_len)):  # the appended 0 is never read
            states = self.hidden(self.pad([piece[:-1]]))[0, -(len(piece) - 1) :]  # (len - 1, D)
            rows.append(self.logits(states))
        return torch.cat(rows)[: len(sequence)] if rows else torch.zeros(0, self.n_items)

    def batches(self, train: list[np.ndarray], rng: np.random.Generator, batch_size: int) -> Iterator[tuple]:
        pieces = [w for s in train for w in windows(s, self.max_len)]
        by_length = np.lexsort((rng.random(len(pieces)), [len(p) for p in pieces]))  # random among equal lengths
        batches = [by_length[a : a + batch_size] for a in range(0, len(pieces), batch_size)]
        for b in rng.permutation(len(batches)):
            chunk = [pieces[i] for i in batches[b]]
            inputs = self.pad([p[:-1] for p in chunk])  # (B, L)
            targets = self.pad([p[1:] for p in chunk])  # (B, L): the next item's code, 0 where none
            yield inputs, targets

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        states = self.hidden(inputs)  # (B, L, D)
        real = targets != 0
        return F.cross_entropy(self.logits(states[real]), targets[real] - 1)  # logits only where a target is
