"""Item indices: how items are named to an LLM, and the prefix trie that constrains decoding to them."""

from llmrec.indexing.trie import ItemTrie

__all__ = ["ItemTrie"]
