"""Trie-constrained beam search: the top-W catalog items for each prompt, with their log-probabilities.

Generative retrieval (TIGER, Rajput et al. 2023; LC-Rec; BIGRec's valid-title decoding) ranks items by
beam search restricted to token sequences that spell an item. transformers' `prefix_allowed_tokens_fn`
calls back into Python once per beam per step; here one `ItemTrie.allowed` call masks all B*W beams
at once and beams advance in the trie with one vectorised `step`. Scores are sums of token
log-probabilities, so the W results come back in the order an exhaustive search would rank them whenever
the true top-W survive the beam (always for W >= the number of items). Our own code: no library offers
trie-masked beam search that also reports per-item scores.
"""

from __future__ import annotations

import torch

from llmrec.indexing.trie import ItemTrie


def _positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.cumsum(-1) - 1).clamp(min=0)  # left padding: real tokens count from 0


@torch.no_grad()
def trie_beam_search(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, trie: ItemTrie, num_beams: int,
    max_steps: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompts (B, T) -> item indices (B, W) (-1 where fewer than W items exist) and scores (B, W),
    best first.

    W live beams extend per step; a candidate that completes an item moves to a pool of the W best
    finished items (as transformers' beam search keeps finished hypotheses aside). Log-probs only fall as
    sequences grow, so a row stops once its best live beam scores below its W-th finished item: from then
    on the pool is exactly what an unbounded search with this beam would return.
    """
    B, W, device = input_ids.shape[0], num_beams, input_ids.device
    # logits_to_keep=1: the prompt's other positions need no (B, T, V) logits (the LM head is 1/5 of the model).
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=_positions(attention_mask),
                use_cache=True, logits_to_keep=1)
    cache, mask = out.past_key_values, attention_mask
    states = trie.initial(B)  # (B,) live beams: one per row at the root
    scores = torch.zeros(B, 1, device=device)  # (B, 1)
    pool_items = torch.full((B, W), -1, dtype=torch.long)  # (B, W) finished items
    pool_scores = torch.full((B, W), float("-inf"), device=device)  # (B, W)
    logits = out.logits[:, -1]
    for _ in range(max_steps + 1):
        beams = scores.shape[1]
        logp = logits.float().log_softmax(-1)  # (B*beams, V)
        logp = logp.masked_fill(~trie.allowed(states).to(device), float("-inf"))
        V = logp.shape[1]
        total = (scores.reshape(-1, 1) + logp).view(B, beams * V)  # (B, beams*V)
        cand_scores, flat = total.topk(min(2 * W, beams * V), dim=-1)  # (B, C): W finished + W live suffice
        parent = flat // V + torch.arange(B, device=device)[:, None] * beams  # (B, C) index into live beams
        tokens = flat % V
        nxt = trie.step(states[parent.flatten().cpu()], tokens.flatten().cpu()).view(parent.shape)  # (B, C)
        item = trie.item_at(nxt.flatten()).view(nxt.shape)  # (B, C)
        valid = torch.isfinite(cand_scores).cpu() & (nxt >= 0)
        finished = valid & (item >= 0)
        # Merge finished candidates into the pool, keep the W best.
        merged_scores = torch.cat([pool_scores, cand_scores.masked_fill(~finished.to(device), float("-inf"))], 1)
        merged_items = torch.cat([pool_items, item], 1)
        pool_scores, keep = merged_scores.topk(W, dim=-1)
        pool_items = merged_items.gather(1, keep.cpu())
        # The W best unfinished candidates live on.
        live_scores = cand_scores.masked_fill(~(valid & ~finished).to(device), float("-inf"))
        scores, pick = live_scores.topk(W, dim=-1)  # (B, W)
        best_live = scores[:, 0]
        if bool(((best_live <= pool_scores[:, -1]) | torch.isinf(best_live)).all()):
            break
        rows = parent.gather(1, pick).flatten()  # (B*W,) which previous live beam each new one extends
        states = nxt.gather(1, pick.cpu()).flatten()
        states = torch.where(torch.isinf(scores.flatten()).cpu(), torch.full_like(states, -1), states)
        tokens = tokens.gather(1, pick).flatten()
        cache.reorder_cache(rows)  # index_select over the batch: also grows B rows into B*W beams at step 1
        mask = torch.cat([mask[rows], mask.new_ones(B * W, 1)], dim=1)  # (B*W, T+t)
        out = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=_positions(mask)[:, -1:],
                    past_key_values=cache, use_cache=True)
        logits = out.logits[:, -1]
    pool_items = torch.where(torch.isinf(pool_scores).cpu(), torch.full_like(pool_items, -1), pool_items)
    return pool_items, pool_scores.cpu()
