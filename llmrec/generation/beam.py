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
    max_steps: int = 64, row_inputs: dict[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompts (B, T) -> item indices (B, W) (-1 where fewer than W items exist) and scores (B, W),
    best first.

    W live beams extend per step; a candidate that completes an item moves to a pool of the W best
    finished items (as transformers' beam search keeps finished hypotheses aside). Log-probs only fall as
    sequences grow, so a live beam scoring at or below its row's W-th finished item is dropped, and a row
    stops when none is left: from then on the pool is exactly what an unbounded search with this beam
    would return. Only live beams run through the model (the KV cache shrinks with them).

    `row_inputs`: more model inputs, one row per prompt (B, ...), e.g. a personalized LoRA's `user_input`;
    each forward pass gets the rows of the prompts its live beams belong to.
    """
    B, W, device = input_ids.shape[0], num_beams, input_ids.device
    # logits_to_keep=1: the prompt's other positions need no (B, T, V) logits (the LM head is 1/5 of the model).

    def rows_for(prompts: torch.Tensor) -> dict[str, torch.Tensor]:  # (L,) prompt of each live beam
        return {k: v[prompts.to(v.device)] for k, v in (row_inputs or {}).items()}

    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=_positions(attention_mask),
                use_cache=True, logits_to_keep=1, **rows_for(torch.arange(B)))
    cache, mask = out.past_key_values, attention_mask  # rows: the live beams only, in `live` order
    states = trie.initial(B)  # (B*beams,) trie states, one root beam per row at first
    scores = torch.zeros(B, 1, device=device)  # (B, beams)
    live = torch.arange(B)  # (L,) flat positions in (B, beams) of the beams the model runs on
    pool_items = torch.full((B, W), -1, dtype=torch.long)  # (B, W) finished items
    pool_scores = torch.full((B, W), float("-inf"), device=device)  # (B, W)
    logits = out.logits[:, -1]  # (L, V)
    for _ in range(max_steps + 1):
        beams = scores.shape[1]
        V = logits.shape[-1]
        # Dead beams (-inf: fewer than W valid continuations) get no forward pass; their rows stay -inf.
        logp = torch.full((B * beams, V), float("-inf"), device=device)  # (B*beams, V)
        logp[live.to(device)] = logits.float().log_softmax(-1)
        logp = logp.masked_fill(~trie.allowed(states).to(device), float("-inf"))
        total = (scores.reshape(-1, 1) + logp).view(B, beams * V)  # (B, beams*V)
        cand_scores, flat = total.topk(min(2 * W, beams * V), dim=-1)  # (B, C): W finished + W live suffice
        parent = flat // V + torch.arange(B, device=device)[:, None] * beams  # (B, C) index into (B*beams)
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
        # Log-probs only fall, so a beam at or below its row's W-th finished item can never enter the pool:
        # drop it (exact pruning). A row with no beam left is done; all rows done ends the search.
        scores = scores.masked_fill(scores <= pool_scores[:, -1:], float("-inf"))
        alive = torch.isfinite(scores.flatten()).cpu()  # (B*W,)
        if not bool(alive.any()):
            break
        row_of = torch.full((B * beams,), -1, dtype=torch.long)  # (B*beams,) cache row of each live beam
        row_of[live] = torch.arange(len(live))
        rows = row_of[parent.gather(1, pick).flatten().cpu()[alive]]  # (L',) cache rows the new beams extend
        live = alive.nonzero().flatten()
        states = torch.where(alive, nxt.gather(1, pick.cpu()).flatten(), torch.full((B * W,), -1))
        tokens = tokens.gather(1, pick).flatten()[live.to(device)]  # (L',)
        cache.reorder_cache(rows.to(device))  # index_select: grows B rows into B*W beams, drops dead ones
        mask = torch.cat([mask[rows.to(device)], mask.new_ones(len(rows), 1)], dim=1)  # (L', T+t)
        out = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=_positions(mask)[:, -1:],
                    past_key_values=cache, use_cache=True, **rows_for(live // W))
        logits = out.logits[:, -1]
    pool_items = torch.where(torch.isinf(pool_scores).cpu(), torch.full_like(pool_items, -1), pool_items)
    return pool_items, pool_scores.cpu()
