"""The gate of personalized LoRA: per-example mixture weights over K LoRA experts from a user representation.

    g = softmax(router(u) / temperature)         (iLoRA: Kong et al. 2024, "Customizing Language Models with
                                                  Instance-wise LoRA for Sequential Recommendation"; RecLoRA:
                                                  Zhu et al. 2024, "Lifelong Personalized Low-Rank Adaptation
                                                  of Large Language Models for Recommendation")
    top-k (optional): g_k = exp(z_k) / sum_{j in top-k} exp(z_j) for k in the top-k logits, 0 elsewhere

The router is one small network shared by every adapted layer (iLoRA's "one gate for all layers"): a linear
map, or a one-hidden-layer MLP (RecLoRA's gate MLP). Users without a representation (cold start) get the
uniform gate 1/K, so their adapter is the plain average of the experts. Hand-written (a few lines of torch):
no library ships a per-example LoRA gate.

`GateSlot` is how the gate reaches the layers: the model computes it once per forward and stores it there,
and every personalized layer reads the same tensor. It stays after the forward, so gradient checkpointing's
recomputation in the backward pass (non-reentrant, transformers' default) reads the gate of its own forward.
"""

from __future__ import annotations

import torch
from torch import nn

from llmrec.errors import LlmrecError


def gate_weights(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None) -> torch.Tensor:
    """(B, K) router logits -> (B, K) mixture weights: softmax(logits / temperature), restricted to the
    top_k largest logits and renormalised over them when top_k is set (and below K)."""
    z = logits / temperature
    if top_k is not None and top_k < z.shape[-1]:
        kth = z.topk(top_k, dim=-1).values[..., -1:]  # (B, 1): the k-th largest logit
        z = z.masked_fill(z < kth, float("-inf"))  # ties at the k-th value keep all tied experts
    return torch.softmax(z, dim=-1)


class Router(nn.Module):
    """u (B, D) -> logits (B, K): linear (hidden = 0) or Linear -> GELU -> Linear (hidden > 0)."""

    def __init__(self, dim: int, n_experts: int, hidden: int = 0):
        super().__init__()
        if hidden > 0:
            self.net: nn.Module = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, n_experts))
        else:
            self.net = nn.Linear(dim, n_experts)

    def forward(self, users: torch.Tensor) -> torch.Tensor:
        return self.net(users)


class GateSlot:
    """Holds the current (B, K) gate for the personalized layers of one model (not a module: no weights)."""

    def __init__(self) -> None:
        self.gate: torch.Tensor | None = None
        self.pinned = False  # set by `Personalizer.gate_for`: forwards without user input keep this gate

    def read(self, batch: int) -> torch.Tensor:
        """The gate for a layer input whose leading dimension is `batch`. A batch that is a multiple of the
        gate's rows (generation expanding each prompt into beams or samples, consecutive as transformers
        does) repeats each user's row; any other size is an error, never a silent broadcast."""
        if self.gate is None:
            raise LlmrecError("personalized LoRA: no user gate for this forward pass; pass user_input=... to the "
                              "model, or run it inside `personalizer.gate_for(user_input)`")
        rows = self.gate.shape[0]
        if batch == rows:
            return self.gate
        if rows and batch % rows == 0:
            return self.gate.repeat_interleave(batch // rows, dim=0)
        raise LlmrecError(f"personalized LoRA: the gate has {rows} users but the layer input has {batch} rows")
