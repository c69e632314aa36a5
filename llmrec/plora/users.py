"""User representations that drive the gate: a frozen SASRec sequence encoder, or a learned user-id table.

Both read one tensor per batch, `user_input`, and return (B, D) representations with a (B,) mask of the users
they know; unknown users get the default (uniform) gate downstream.

- `SasrecUsers`: `user_input` (B, L) catalog positions of each example's history in the encoder's catalog,
  padded with -1; the representation is SASRec's last state, `encode_users(histories)` (iLoRA's "sequence
  embedding from a frozen SASRec"). A history with no item the encoder knows is a cold-start user. The
  encoder is llmrec.collab's SASRec as `load_collab` reads it, frozen and always in eval mode (no dropout).
- `IdUsers`: `user_input` (B,) rows of a learned embedding table over the training users (-1: unknown user).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from llmrec.collab.base import CollabModel
from llmrec.errors import LlmrecError


class UserSource(nn.Module):
    kind: str
    dim: int

    def forward(self, user_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (B, D) representations, (B,) bool: True where the user is known."""
        raise NotImplementedError


class SasrecUsers(UserSource):
    kind = "sasrec"

    def __init__(self, encoder: CollabModel, folder: str | Path | None = None):
        super().__init__()
        if encoder.kind != "sasrec":
            raise LlmrecError(f"{folder or 'encoder'}: the user encoder must be a sasrec model, not {encoder.kind}")
        self.encoder = encoder.eval().requires_grad_(False)
        self.folder = None if folder is None else str(folder)
        self.dim = int(encoder.dim)

    def train(self, mode: bool = True) -> SasrecUsers:
        super().train(mode)
        self.encoder.eval()  # frozen: a Trainer's model.train() must not switch its dropout on
        return self

    def forward(self, user_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if user_input.dim() != 2:
            raise LlmrecError("sasrec users: user_input must be (batch, history) item positions, "
                              f"got {user_input.dim()}-d")
        if user_input.numel() and int(user_input.max()) >= self.encoder.n_items:
            raise LlmrecError(f"sasrec users: item position {int(user_input.max())} is outside the encoder's "
                              f"catalog of {self.encoder.n_items} items")
        rows = user_input.cpu().numpy()
        histories = [row[row >= 0] for row in rows]
        known = torch.tensor([len(h) > 0 for h in histories], dtype=torch.bool, device=user_input.device)
        out = torch.zeros(len(histories), self.dim, device=user_input.device)
        if known.any():
            with torch.no_grad():
                encoded = self.encoder.encode_users([h for h in histories if len(h)])  # (U, D)
            out[known] = encoded.to(out.device, out.dtype)
        return out, known


class IdUsers(UserSource):
    kind = "id"

    def __init__(self, user_ids: Sequence[str], dim: int = 32):
        super().__init__()
        self.user_ids = [str(u) for u in user_ids]
        self.row = {u: i for i, u in enumerate(self.user_ids)}
        self.dim = dim
        self.table = nn.Embedding(max(1, len(self.user_ids)), dim)
        nn.init.normal_(self.table.weight, std=1.0)  # unit scale: router logits differ between users from the start

    def rows(self, user_ids: Sequence[str]) -> torch.Tensor:
        """User ids -> (B,) rows of the table, -1 for users it does not hold (cold start)."""
        return torch.tensor([self.row.get(str(u), -1) for u in user_ids], dtype=torch.long)

    def forward(self, user_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if user_input.dim() != 1:
            raise LlmrecError(f"id users: user_input must be (batch,) user rows, got {user_input.dim()}-d")
        known = (user_input >= 0) & (user_input < len(self.user_ids))
        return self.table(torch.where(known, user_input, 0)), known


def history_positions(histories: Sequence[Sequence[str]], catalog: Sequence[str]) -> torch.Tensor:
    """Item-id histories -> (B, L) positions in the encoder's catalog, -1 padded on the right. Items the
    catalog does not hold are dropped; a history left empty makes a cold-start user."""
    code = {item: c for c, item in enumerate(catalog)}
    rows = [[code[i] for i in h if i in code] for h in histories]
    out = np.full((len(rows), max([1, *map(len, rows)])), -1, np.int64)
    for r, row in enumerate(rows):
        out[r, : len(row)] = row
    return torch.from_numpy(out)


def user_inputs(users: UserSource, rows: Any, catalog: Sequence[str]) -> torch.Tensor:
    """Rows with `user_id` and `history_item_ids` -> (N,) id-table rows, or (N, L) positions of the history in
    `catalog` (the item ids in catalog order), -1 padded. Training and ranking build user input through here."""
    if isinstance(users, IdUsers):
        return users.rows(rows["user_id"])
    return history_positions(rows["history_item_ids"], catalog)
