"""A prefix trie over item token sequences, queried for a whole batch of decoding states at once.

Constrained decoding (TIGER, LC-Rec, BIGRec's "valid titles only") must only emit token sequences that
spell a catalog item. Per-beam Python callbacks (transformers' `prefix_allowed_tokens_fn`) walk a dict
trie once per beam per step; here the trie is flattened into sorted tensors so that one `step` and one
`allowed` call serve every beam of every user: (B,) states in, (B,) states or a (B, V) mask out.
No library offers this for both HF generation and vLLM logits processors, hence our own.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class ItemTrie:
    """Trie of token sequences. Node 0 is the root; -1 is the dead state (an invalid prefix)."""

    def __init__(self, sequences: Sequence[Sequence[int]], vocab_size: int, item_ids: Sequence[str] | None = None):
        if not sequences:
            raise ValueError("an ItemTrie needs at least one sequence")
        children: list[dict[int, int]] = [{}]
        self.max_length = max(len(seq) for seq in sequences)
        self._leaf_item: dict[int, int] = {}
        for n, seq in enumerate(sequences):
            if not seq:
                raise ValueError(f"sequence {n} is empty")
            node = 0
            for token in seq:
                if not 0 <= token < vocab_size:
                    raise ValueError(f"sequence {n}: token {token} outside the vocabulary (size {vocab_size})")
                nxt = children[node].get(token)
                if nxt is None:
                    nxt = len(children)
                    children[node][token] = nxt
                    children.append({})
                node = nxt
            if node in self._leaf_item:
                raise ValueError(f"sequences {self._leaf_item[node]} and {n} are identical: items must be distinct")
            self._leaf_item[node] = n
        self.vocab_size = vocab_size
        self.item_ids = list(item_ids) if item_ids is not None else None
        # Flattened edges sorted by key = parent * V + token, for searchsorted lookups.
        edges = sorted((p * vocab_size + t, c) for p, kids in enumerate(children) for t, c in kids.items())
        self._keys = torch.tensor([k for k, _ in edges], dtype=torch.long)  # (E,)
        self._child = torch.tensor([c for _, c in edges], dtype=torch.long)  # (E,)
        self._parent = self._keys // vocab_size  # (E,)
        self._token = self._keys % vocab_size  # (E,)
        self._item_of_node = torch.full((len(children),), -1, dtype=torch.long)  # (N,)
        for node, item in self._leaf_item.items():
            self._item_of_node[node] = item
        self.n_nodes = len(children)

    def initial(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, dtype=torch.long)  # (B,) all at the root

    def step(self, states: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Follow one token per state: (B,), (B,) -> (B,) next states, -1 where the token leaves the trie."""
        keys = states.clamp(min=0) * self.vocab_size + tokens  # (B,)
        pos = torch.searchsorted(self._keys, keys).clamp(max=len(self._keys) - 1)  # (B,)
        found = (self._keys[pos] == keys) & (states >= 0)
        return torch.where(found, self._child[pos], torch.full_like(states, -1))

    def walk(self, prefixes: torch.Tensor) -> torch.Tensor:
        """States after whole prefixes: (B, T) token ids -> (B,)."""
        states = self.initial(prefixes.shape[0])
        for t in range(prefixes.shape[1]):
            states = self.step(states, prefixes[:, t])
        return states

    def allowed(self, states: torch.Tensor) -> torch.Tensor:
        """(B,) states -> (B, V) bool mask of tokens that continue toward an item; all False for dead
        states and for complete items that no longer item extends."""
        mask = torch.zeros(states.shape[0], self.vocab_size, dtype=torch.bool)
        # For each state, its edges are a contiguous run of the sorted keys: [start, end).
        start = torch.searchsorted(self._keys, states.clamp(min=0) * self.vocab_size)  # (B,)
        end = torch.searchsorted(self._keys, (states.clamp(min=0) + 1) * self.vocab_size)  # (B,)
        end = torch.where(states >= 0, end, start)
        counts = end - start  # (B,)
        rows = torch.repeat_interleave(torch.arange(states.shape[0]), counts)  # (sum counts,)
        offsets = torch.arange(int(counts.sum())) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        mask[rows, self._token[torch.repeat_interleave(start, counts) + offsets]] = True
        return mask

    def item_at(self, states: torch.Tensor) -> torch.Tensor:
        """(B,) states -> (B,) index of the item a complete sequence spells, -1 otherwise."""
        return torch.where(states >= 0, self._item_of_node[states.clamp(min=0)], torch.full_like(states, -1))
