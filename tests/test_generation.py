"""Trie-constrained beam search and batched recommendation on a tiny model."""

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
    plain, plain_scores = trie_beam_search(model, torch.tensor([[1, 3, 4, 20]]), torch.ones(1, 4, dtype=torch.long),
                                           trie, num_beams=3)
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
