"""Two trained models' scores fused over the whole catalog: z(base) + weight * z(other), z standardised per
user over the catalog, the weight chosen on validation NDCG@k (`llmrec train collab --model fused`).

LlamaRec's fusion of a retriever with an LLM (Yue et al. 2023), here over every item instead of a candidate
list, so an LLM ranker (`itemhead`) and a classic one (SASRec) combine into one full ranking. Weight 0 is the
base model's ranking exactly. The folder saves only the weight and the member folders' paths.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from llmrec.collab.base import CollabModel
from llmrec.errors import LlmrecError


def standardize(scores: torch.Tensor) -> torch.Tensor:
    """(U, N) -> (U, N) zero mean, unit variance per user (a constant row becomes 0)."""
    centred = scores - scores.mean(1, keepdim=True)
    return centred / scores.std(1, keepdim=True).clamp_min(1e-12)


class FusedModel(CollabModel):
    kind = "fused"
    trains_by_gradient = False

    def __init__(self, n_items: int, members: list[str], weight: float = 0.0):
        super().__init__()
        from llmrec.collab.checkpoint import load_collab  # checkpoint lists this class among the kinds

        if len(members) != 2:
            raise LlmrecError(f"--members: two model folders (the base, then the one weighted), got {len(members)}")
        self.n_items, self.members, self.weight = n_items, list(members), weight
        self.parts = [load_collab(m) for m in members]  # a plain list: the members are not saved again
        self.register_buffer("anchor", torch.zeros(0), persistent=False)  # gives the model a device

    def hyperparameters(self) -> dict[str, Any]:
        return {"n_items": self.n_items, "members": self.members, "weight": self.weight}

    @torch.no_grad()
    def score(self, users: list[str], histories: list[np.ndarray]) -> torch.Tensor:
        base, other = (p.score(users, histories).float().to(self.device) for p in self.parts)  # (U, N) each
        if base.shape != other.shape:
            raise LlmrecError(f"--members score {base.shape[1]} and {other.shape[1]} items: not the same catalog")
        return standardize(base) + self.weight * standardize(other)
