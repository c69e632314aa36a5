"""The batched item trie: every item reachable, nothing else, and the same answers as a dict trie."""

import itertools

import pytest
import torch

from llmrec.indexing import ItemTrie

# Semantic-ID-like codes of different lengths (titles tokenize to varying lengths).
SEQS = [[1, 4, 7], [1, 4, 8], [1, 5], [2, 4, 7, 9], [3]]


def test_every_item_is_reachable_and_recognised():
    trie = ItemTrie(SEQS, vocab_size=10)
    for n, seq in enumerate(SEQS):
        state = trie.walk(torch.tensor([seq]))
        assert trie.item_at(state).item() == n
        assert not trie.allowed(state).any()  # a complete item allows nothing more


def test_allowed_matches_a_dict_trie_for_all_prefixes():
    trie = ItemTrie(SEQS, vocab_size=10)
    prefixes = [p for length in range(4) for p in itertools.product(range(10), repeat=length)]
    for length in range(4):
        batch = [p for p in prefixes if len(p) == length]
        states = trie.walk(torch.tensor(batch, dtype=torch.long).reshape(len(batch), length))
        mask = trie.allowed(states)
        for row, p in enumerate(batch):
            expected = {s[length] for s in SEQS if len(s) > length and tuple(s[:length]) == p}
            assert set(torch.nonzero(mask[row]).flatten().tolist()) == expected, p


def test_invalid_prefix_is_dead():
    trie = ItemTrie(SEQS, vocab_size=10)
    states = trie.walk(torch.tensor([[1, 6], [9, 9]]))
    assert states.tolist() == [-1, -1]
    assert not trie.allowed(states).any() and trie.item_at(states).tolist() == [-1, -1]


def test_bad_sequences_are_rejected():
    with pytest.raises(ValueError, match="identical"):
        ItemTrie([[1, 2], [1, 2]], vocab_size=5)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        ItemTrie([[1, 7]], vocab_size=5)
