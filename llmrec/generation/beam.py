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
    best first."""
    B, W, device = input_ids.shape[0], num_beams, input_ids.device
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=_positions(attention_mask),
                use_cache=True)
    logp = out.logits[:, -1].float().log_softmax(-1)  # (B, V)
    states = trie.initial(B)
    logp = logp.masked_fill(~trie.allowed(states).to(device), float("-inf"))
    scores, tokens = logp.topk(W, dim=-1)  # (B, W)
    states = trie.step(states.repeat_interleave(W), tokens.flatten().cpu())  # (B*W,)
    cache = out.past_key_values
    cache.batch_repeat_interleave(W)
    mask = attention_mask.repeat_interleave(W, dim=0)  # (B*W, T)
    scores, tokens = scores.flatten(), tokens.flatten()  # (B*W,)
    for _ in range(max_steps):
        done = (trie.item_at(states) >= 0) | (states < 0)  # complete items, and dead beams (too few items)
        if bool(done.all()):
            break
        mask = torch.cat([mask, mask.new_ones(B * W, 1)], dim=1)  # (B*W, T+t)
        out = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=_positions(mask)[:, -1:],
                    past_key_values=cache, use_cache=True)
        logp = out.logits[:, -1].float().log_softmax(-1)  # (B*W, V)
        logp = logp.masked_fill(~trie.allowed(states).to(device), float("-inf"))
        # A finished beam competes with its final score: one placeholder continuation (token 0) costing 0.
        logp[done.to(device)] = float("-inf")
        logp[done.to(device), 0] = 0.0
        total = (scores[:, None] + logp).view(B, -1)  # (B, W*V)
        scores, flat = total.topk(W, dim=-1)  # (B, W)
        parent = (flat // logp.shape[1] + torch.arange(B, device=device)[:, None] * W).flatten()  # (B*W,)
        tokens = (flat % logp.shape[1]).flatten()
        parent_cpu, tokens_cpu = parent.cpu(), tokens.cpu()
        states = torch.where(done[parent_cpu], states[parent_cpu], trie.step(states[parent_cpu], tokens_cpu))
        states = torch.where(torch.isinf(scores.flatten()).cpu(), torch.full_like(states, -1), states)
        cache.reorder_cache(parent)
        mask = mask[parent]
        scores = scores.flatten()
    items = trie.item_at(states).view(B, W)
    return items, scores.view(B, W).cpu()
