"""Chat prompts -> top-K catalog items per user with a transformers model, batched."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tqdm.auto import tqdm

from llmrec.generation.beam import trie_beam_search
from llmrec.indexing.trie import ItemTrie


def recommend(
    model: Any, tokenizer: Any, prompts: Sequence[list[dict[str, str]]], trie: ItemTrie, k: int,
    batch_size: int = 8, progress: bool = True,
) -> tuple[list[list[str]], list[list[float]]]:
    """Rank catalog items for each chat prompt (list of {role, content}); returns item ids and log-probs."""
    if trie.item_ids is None:
        raise ValueError("the trie needs item_ids to name its items")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    ranked, scores = [], []
    try:
        for start in tqdm(range(0, len(prompts), batch_size), desc="ranking", disable=not progress,
                          unit="batch"):
            texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
                     for p in prompts[start : start + batch_size]]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            items, logp = trie_beam_search(model, enc["input_ids"], enc["attention_mask"], trie, num_beams=k,
                                           max_steps=trie.max_length)
            for row, row_scores in zip(items.tolist(), logp.tolist()):
                kept = [(trie.item_ids[i], s) for i, s in zip(row, row_scores) if i >= 0]
                ranked.append([i for i, _ in kept])
                scores.append([s for _, s in kept])
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return ranked, scores
