"""Chat prompts -> top-K catalog items per user with a transformers model, batched."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tqdm.auto import tqdm

from llmrec.generation.beam import trie_beam_search
from llmrec.indexing.trie import ItemTrie


def encode_chat_prompts(tokenizer: Any, prompts: Sequence[list[dict[str, str]]]) -> Any:
    """Chat prompts -> a left-padded batch ending in the assistant's turn, as the model saw its prompts in
    training (`input_ids`, `attention_mask`: (B, T))."""
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    return tokenizer(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)


def recommend(
    model: Any, tokenizer: Any, prompts: Sequence[list[dict[str, str]]], trie: ItemTrie, k: int,
    batch_size: int = 8, progress: bool = True, row_inputs: dict[str, Any] | None = None,
) -> tuple[list[list[str]], list[list[float]]]:
    """Rank catalog items for each chat prompt (list of {role, content}); returns item ids and log-probs.
    `row_inputs`: more model inputs with one row per prompt (see `trie_beam_search`)."""
    if trie.item_ids is None:
        raise ValueError("the trie needs item_ids to name its items")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ranked, scores = [], []
    try:
        for start in tqdm(range(0, len(prompts), batch_size), desc="ranking", disable=not progress,
                          unit="batch"):
            enc = encode_chat_prompts(tokenizer, prompts[start : start + batch_size]).to(device)
            extra = {name: v[start : start + batch_size].to(device) for name, v in (row_inputs or {}).items()}
            items, logp = trie_beam_search(model, enc["input_ids"], enc["attention_mask"], trie, num_beams=k,
                                           max_steps=trie.max_length, row_inputs=extra)
            for row, row_scores in zip(items.tolist(), logp.tolist()):
                kept = [(trie.item_ids[i], s) for i, s in zip(row, row_scores) if i >= 0]
                ranked.append([i for i, _ in kept])
                scores.append([s for _, s in kept])
    finally:
        model.train(was_training)
    return ranked, scores
