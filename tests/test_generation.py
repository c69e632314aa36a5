"""Trie-constrained beam search and batched recommendation on a tiny model."""

import pytest
import torch

from llmrec.generation.beam import trie_beam_search
from llmrec.generation.recommend import recommend
from llmrec.indexing.trie import ItemTrie

from conftest import tiny_model

# Items of different lengths, sharing prefixes, one a prefix of another before the end token (2).
SEQUENCES = [[5, 6, 2], [5, 7, 2], [5, 6, 8, 2], [9, 2], [10, 11, 12, 2], [10, 13, 2]]


def exhaustive(model, prompt: list[int], sequences: list[list[int]]) -> list[float]:
    """Sum of token log-probs of each full sequence after the prompt, by teacher forcing."""
    out = []
    for seq in sequences:
        ids = torch.tensor([prompt + seq])
        logp = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].log_softmax(-1)
        out.append(float(logp[torch.arange(len(seq)), torch.tensor(seq)].sum()))
    return out


def test_beam_search_equals_exhaustive_ranking_when_the_beam_holds_every_item():
    model = tiny_model(32).eval()
    trie = ItemTrie(SEQUENCES, vocab_size=32)
    prompts = [[1, 3, 4, 20], [1, 21, 22, 23]]
    ids = torch.tensor(prompts)
    with torch.no_grad():
        items, scores = trie_beam_search(model, ids, torch.ones_like(ids), trie, num_beams=len(SEQUENCES))
        for row, prompt in enumerate(prompts):
            truth = exhaustive(model, prompt, SEQUENCES)
            order = sorted(range(len(SEQUENCES)), key=lambda i: -truth[i])
            assert items[row].tolist() == order
            torch.testing.assert_close(scores[row], torch.tensor([truth[i] for i in order]), rtol=1e-4, atol=1e-4)


def test_narrow_beams_return_distinct_real_items_in_score_order_and_left_padding_is_harmless():
    model = tiny_model(32).eval()
    trie = ItemTrie(SEQUENCES, vocab_size=32)
    padded = torch.tensor([[0, 0, 1, 3, 4, 20]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1]])
    items, scores = trie_beam_search(model, padded, mask, trie, num_beams=3)
    plain, plain_scores = trie_beam_search(
        model, torch.tensor([[1, 3, 4, 20]]), torch.ones(1, 4, dtype=torch.long), trie, num_beams=3
    )
    assert items.tolist() == plain.tolist()
    torch.testing.assert_close(scores, plain_scores, rtol=1e-4, atol=1e-4)
    row = items[0].tolist()
    assert len(set(row)) == 3 and all(0 <= i < len(SEQUENCES) for i in row)
    assert scores[0].tolist() == sorted(scores[0].tolist(), reverse=True)


def test_more_beams_than_items_leaves_empty_slots():
    model = tiny_model(32).eval()
    trie = ItemTrie([[5, 2], [6, 2]], vocab_size=32)
    items, scores = trie_beam_search(model, torch.tensor([[1, 3]]), torch.ones(1, 2, dtype=torch.long), trie, 4)
    assert sorted(items[0, :2].tolist()) == [0, 1] and items[0, 2:].tolist() == [-1, -1]
    assert torch.isinf(scores[0, 2:]).all()


def test_recommend_names_catalog_items_for_chat_prompts(smollm2_tokenizer):
    tok = smollm2_tokenizer
    titles = ["Toy Story (1995)", "Heat (1995)", "Fargo (1996)", "Toy Story 2 (1999)"]
    ids = [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in titles]
    trie = ItemTrie(ids, vocab_size=len(tok), item_ids=["i1", "i2", "i3", "i4"])
    model = tiny_model(len(tok))
    prompts = [[{"role": "user", "content": "I liked Heat (1995)."}], [{"role": "user", "content": "Next?"}]] * 3
    side = tok.padding_side
    ranked, scores = recommend(model, tok, prompts, trie, k=4, batch_size=4, progress=False)
    assert len(ranked) == 6 and all(sorted(r) == ["i1", "i2", "i3", "i4"] for r in ranked)
    assert ranked[0] == ranked[2] and scores[1] == scores[3]  # batching does not change results
    assert tok.padding_side == side  # restored after left-padding the batch


def reference_beam(model, prompt: list[int], sequences: list[list[int]], width: int) -> list[tuple[int, float]]:
    """Textbook beam search, one prefix at a time by teacher forcing (no cache, no padding, no batch): the
    `width` best unfinished prefixes go on, finished items are set aside, and a prefix that cannot beat the
    width-th finished item is dropped (log-probs only fall). -> [(item, score)], best first."""
    items = {tuple(s): n for n, s in enumerate(sequences)}
    live, done = [((), 0.0)], []
    while live:
        grown = []
        for prefix, score in live:
            ids = torch.tensor([prompt + list(prefix)])
            logp = model(input_ids=ids, logits_to_keep=1).logits[0, -1].log_softmax(-1)
            nxt = {s[len(prefix)] for s in sequences if tuple(s[: len(prefix)]) == prefix and len(s) > len(prefix)}
            grown += [(prefix + (t,), score + float(logp[t])) for t in nxt]
        done = sorted(done + [(items[p], s) for p, s in grown if p in items], key=lambda x: -x[1])[:width]
        floor = done[-1][1] if len(done) == width else float("-inf")
        live = sorted([(p, s) for p, s in grown if p not in items and s > floor], key=lambda x: -x[1])[:width]
    return done


def test_recommend_top_k_of_a_larger_catalog_matches_a_reference_beam_search_in_any_batch(smollm2_tokenizer):
    tok = smollm2_tokenizer
    titles = [
        "Toy Story (1995)",
        "Toy Story 2 (1999)",
        "Heat (1995)",
        "Fargo (1996)",
        "Casino (1995)",
        "Se7en (1995)",
        "Babe (1995)",
        "Twister (1996)",
    ]
    sequences = [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in titles]
    trie = ItemTrie(sequences, vocab_size=len(tok), item_ids=[f"i{n}" for n in range(len(titles))])
    model = tiny_model(len(tok)).eval()
    said = ["I liked Heat (1995).", "Anything with Toy Story (1995) in it, please.", "Next?"]  # lengths differ
    prompts = [[{"role": "user", "content": text}] for text in said]
    alone, alone_scores = recommend(model, tok, prompts, trie, k=3, batch_size=1, progress=False)
    together, together_scores = recommend(model, tok, prompts, trie, k=3, batch_size=2, progress=False)
    assert together == alone  # users 0 and 1 share a left-padded batch, user 2 is alone in the second one
    torch.testing.assert_close(torch.tensor(together_scores), torch.tensor(alone_scores), rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        for prompt, items, scores in zip(prompts, alone, alone_scores):
            text = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
            expected = reference_beam(model, tok(text, add_special_tokens=False)["input_ids"], sequences, 3)
            assert items == [f"i{n}" for n, _ in expected]  # 3 of the 8 items, in the reference's order
            assert scores == pytest.approx([s for _, s in expected], abs=1e-4)
    assert len({tuple(r) for r in alone}) > 1  # the prompt matters: not one list for everybody
