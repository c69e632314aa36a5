"""GRPO rollouts that are catalog items: TRL's `rollout_func` hook, filled with trie-constrained decoding.

TRL's GRPOTrainer samples G free-text completions per prompt; a recommender's completions must be G items.
MiniOneRec (arXiv 2510.24431) takes the G best items of a constrained beam search (num_beams = G): distinct
valid items, each with its beam rank, which the rank-aware reward reads. Constrained sampling is the option
for more exploration (items may repeat within a group). Either way the decoding settings are ours: the
model's `generation_config` (an Instruct model asks for do_sample/top_k/top_p) never reaches the rollout,
the failure MiniOneRec's users hit (its issue #49). Our own code: TRL has no constrained rollout.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import torch
from transformers import GenerationConfig, LogitsProcessor

from llmrec.errors import LlmrecError
from llmrec.generation.beam import trie_beam_search
from llmrec.generation.recommend import encode_chat_prompts
from llmrec.indexing.item_index import ItemIndex
from llmrec.indexing.trie import ItemTrie


class TrieLogitsProcessor(LogitsProcessor):
    """transformers' extension point for `generate`: tokens that leave the item trie get -inf. A row whose
    item is complete may only continue with `pad_token_id` (what `generate` appends to finished rows), so
    its distribution stays finite."""

    def __init__(self, trie: ItemTrie, prompt_length: int, pad_token_id: int):
        self.trie, self.prompt_length, self.pad = trie, prompt_length, pad_token_id

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        states = self.trie.walk(input_ids[:, self.prompt_length :].cpu())  # (B,)
        allowed = self.trie.allowed(states)  # (B, V)
        allowed[~allowed.any(-1), self.pad] = True
        return scores.masked_fill(~allowed.to(scores.device), float("-inf"))


class TrieRollout:
    """`rollout_func(prompts, trainer)` for TRL's GRPOTrainer. TRL hands each process its slice of the
    generation batch, every prompt repeated G times in a row; we decode each distinct prompt once and return,
    per rollout, the prompt's tokens, the item's tokens (as SFT trained them: EOS-terminated), and the extra
    columns the rewards read: `item_id` (None for an invalid item) and `beam_rank`. No sampling log-probs
    are returned: TRL only needs them to correct for a separate inference engine (vLLM)."""

    def __init__(self, index: ItemIndex, tokenizer: Any, group_size: int,
                 mode: Literal["beam", "sample"] = "beam", temperature: float = 1.0):
        if mode not in ("beam", "sample"):
            raise LlmrecError(f"unknown rollout {mode!r}: beam or sample")
        self.tokenizer, self.group_size, self.mode, self.temperature = tokenizer, group_size, mode, temperature
        self.trie = index.trie(tokenizer)
        self.item_ids = index.item_ids
        self.item_tokens = index.token_ids(tokenizer)  # per item, its completion
        self.invalid = 0  # invalid items over the whole run (0 under the trie)
        self.seconds = 0.0  # decoding time over the whole run

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        G = self.group_size
        firsts = prompts[::G]
        if len(prompts) % G or any(prompts[i] != firsts[i // G] for i in range(len(prompts))):
            raise LlmrecError(f"a process got a partial group of {G} rollouts: per_device_train_batch_size x "
                              f"steps_per_generation must be a multiple of num_generations ({G})")
        model = trainer.accelerator.unwrap_model(trainer.model)
        enc = encode_chat_prompts(self.tokenizer, firsts)
        start = time.perf_counter()
        items, ranks = self.decode(model, enc)  # (P, G) item positions (-1 invalid) and ranks in the group
        seconds = time.perf_counter() - start
        eos = self.tokenizer.eos_token_id
        prompt_ids = [ids[m.bool()].tolist() for ids, m in zip(enc["input_ids"], enc["attention_mask"])]
        flat = items.flatten().tolist()
        invalid = sum(i < 0 for i in flat)
        self.invalid, self.seconds = self.invalid + invalid, self.seconds + seconds
        trainer._log_metric("rollout/invalid_items", float(invalid))
        trainer._log_metric("rollout/seconds", seconds)
        return {
            "prompt_ids": [ids for ids in prompt_ids for _ in range(G)],
            "completion_ids": [self.item_tokens[i] if i >= 0 else [eos] for i in flat],
            "logprobs": None,
            "item_id": [self.item_ids[i] if i >= 0 else None for i in flat],
            "beam_rank": ranks.flatten().tolist(),
        }

    @torch.no_grad()
    def decode(self, model: Any, enc: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Distinct prompts, left-padded (P, T) -> (P, G) item positions (-1: no valid item) and (P, G) ranks
        within the group (beam: the beam order; sample: by the sample's constrained log-probability)."""
        was_training = model.training
        model.eval()  # no dropout while choosing rollouts
        enc = enc.to(next(model.parameters()).device)
        try:
            if self.mode == "beam":
                items, _ = trie_beam_search(model, enc["input_ids"], enc["attention_mask"], self.trie,
                                            num_beams=self.group_size, max_steps=self.trie.max_length)
                return items, torch.arange(self.group_size).expand_as(items).clone()
            return self.sample(model, enc)
        finally:
            model.train(was_training)

    def sample(self, model: Any, enc: Any) -> tuple[torch.Tensor, torch.Tensor]:
        G, T = self.group_size, enc["input_ids"].shape[1]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        config = GenerationConfig(do_sample=True, temperature=self.temperature, top_k=0, top_p=1.0, num_beams=1,
                                  num_return_sequences=G, max_new_tokens=self.trie.max_length,
                                  eos_token_id=self.tokenizer.eos_token_id, pad_token_id=pad, output_scores=True,
                                  return_dict_in_generate=True)
        out = model.generate(**enc, generation_config=config, logits_processor=[TrieLogitsProcessor(self.trie, T, pad)])
        new = out.sequences[:, T:].cpu()  # (P*G, t)
        logp = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True).cpu()  # (P*G, t)
        eos = self.tokenizer.eos_token_id
        items, totals = [], []
        for row, row_logp in zip(new.tolist(), logp):
            n = row.index(eos) + 1 if eos in row else len(row)  # the item ends at its EOS; pads follow
            items.append(int(self.trie.item_at(self.trie.walk(torch.tensor([row[:n]])))[0]))
            totals.append(float(row_logp[:n].sum()))
        items_t = torch.tensor(items).view(-1, G)  # (P, G)
        order = torch.tensor(totals).view(-1, G).argsort(dim=1, descending=True, stable=True)  # (P, G)
        return items_t, order.argsort(dim=1)  # rank of each sample within its group
