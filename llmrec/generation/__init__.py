"""Turning prompts into ranked catalog items: trie-constrained beam search over item token sequences."""
