"""The interface every classic model shares: full-catalog scores for a batch of users, saved as safetensors.

Scores are (U, N) over the catalog in `dataset.items` order. Ranking, history masking, candidate export,
evaluation and the training loop live outside the models (`rank.py`, `candidates.py`, `train.py`), so a
new model only says how it scores and, if it trains by gradient, how it makes batches and a loss.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from llmrec.errors import LlmrecError


class CollabModel(nn.Module):
    kind: ClassVar[str]
    trains_by_gradient: ClassVar[bool] = True
    prefers_accelerator: ClassVar[bool] = False  # trained and scored on a GPU when there is one (the LLM models)

    def hyperparameters(self) -> dict[str, Any]:
        """The constructor's arguments: written to config.json, so `load` can rebuild the model."""
        raise NotImplementedError

    def score(self, users: list[str], histories: list[np.ndarray]) -> torch.Tensor:
        """(U,) users with their histories (catalog positions, time order) -> (U, N) scores."""
        raise NotImplementedError

    def score_items(self, users: list[str], histories: list[np.ndarray], items: np.ndarray) -> torch.Tensor:
        """(U,) users and (U, C) catalog positions -> (U, C) the scores of those items (a reward model's view)."""
        scores = self.score(users, histories)  # (U, N)
        return scores.gather(1, torch.as_tensor(items, device=scores.device))

    def prefix_scores(self, sequence: np.ndarray) -> torch.Tensor:
        """(n,) one user's items in time order -> (n, N): row t scores the catalog from items[: t + 1] alone,
        so candidates for a training target at t + 1 never see that target or anything after it."""
        raise LlmrecError(f"{self.kind} scores users by id, not by history prefix: use sasrec or ease")

    def encode_users(self, histories: list[np.ndarray]) -> torch.Tensor:
        """(U,) histories -> (U, D) user representations."""
        raise LlmrecError(f"{self.kind} has no user representation from histories: use sasrec")

    def batches(self, train: list[np.ndarray], rng: np.random.Generator, batch_size: int) -> Iterator[tuple]:
        """One epoch of training batches (tensors) from the users' training sequences."""
        raise NotImplementedError

    def loss(self, *batch: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return next(iter([*self.parameters(), *self.buffers()])).device
