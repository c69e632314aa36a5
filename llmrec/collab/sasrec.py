"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018), trained with full-softmax
cross-entropy over the catalog (Klenitskiy & Vasilev, RecSys 2023, "Turning Dross Into Gold Loss: is
BERT4Rec really better than SASRec?", which replaces the original sampled BCE and gains by a wide margin).

Item embeddings plus learned positions feed pre-norm causal Transformer blocks; the output layer is the
item embedding matrix itself (shared, as in the paper). One forward pass over a sequence trains every
next-item target at once: position t predicts item t + 1. Positions count back from the newest item
(left padding to `max_len`, as in the paper), so a batch is padded only to its longest sequence and
batches group sequences of similar length: the padding columns it drops could not be attended to anyway.
The block is written out (not torch's TransformerEncoderLayer) to leave dropout off the (B, H, L, L)
attention weights: on a CPU, drawing that mask took a third of the training time.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from llmrec.collab.next_item import NextItemModel


class Block(nn.Module):
    """Pre-norm Transformer block: x + Attn(LN(x)), then x + FFN(LN(x)) (SASRec's Eq. 4-5 with pre-norm)."""

    def __init__(self, dim: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        b, length, d = x.shape  # (B, L, D); allowed: (B, 1, L, L), True where a query may attend a key
        q, k, v = self.qkv(self.norm1(x)).view(b, length, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)  # (B, H, L, D / H)
        x = x + self.dropout(self.proj(attn.transpose(1, 2).reshape(b, length, d)))
        return x + self.dropout(self.ffn(self.norm2(x)))


class SASRec(NextItemModel):
    kind = "sasrec"

    def __init__(self, n_items: int, max_len: int = 200, dim: int = 64, n_layers: int = 2, n_heads: int = 2,
                 dropout: float = 0.2):
        super().__init__()
        self.n_items, self.max_len, self.dim = n_items, max_len, dim
        self.n_layers, self.n_heads, self.dropout = n_layers, n_heads, dropout
        self.item_emb = nn.Embedding(n_items + 1, dim, padding_idx=0)  # code 0 pads; item c is code c + 1
        self.pos_emb = nn.Embedding(max_len, dim)  # row max_len - 1 is the newest item
        self.emb_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(dim, n_heads, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(dim)
        for emb in (self.item_emb, self.pos_emb):
            nn.init.normal_(emb.weight, std=0.02)  # small: the shared output layer starts near uniform

    def hyperparameters(self) -> dict[str, Any]:
        return {"n_items": self.n_items, "max_len": self.max_len, "dim": self.dim, "n_layers": self.n_layers,
                "n_heads": self.n_heads, "dropout": self.dropout}

    def hidden(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, L) codes -> (B, L, D) states; position t sees items 0..t only."""
        length = codes.shape[1]
        x = self.item_emb(codes) + self.pos_emb.weight[self.max_len - length :]  # (B, L, D)
        real = codes != 0  # (B, L)
        causal = torch.ones(length, length, dtype=torch.bool, device=codes.device).tril()  # (L, L)
        # Attend to earlier real items; a padding position attends to itself only, so no row is all masked.
        eye = torch.eye(length, dtype=torch.bool, device=codes.device)
        allowed = (causal & (real[:, None, :] | eye))[:, None]  # (B, 1, L, L)
        x = self.emb_dropout(x)
        for block in self.blocks:
            x = block(x, allowed)
        return self.norm(x)

    def logits(self, states: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., N) over catalog items (the padding code is not an item)."""
        return states @ self.item_emb.weight[1:].T
