"""Verbalizers: how one forward pass over a prompt listing N lettered candidates gives each candidate a score.

- `letter` (LlamaRec, Yue et al. 2023, Sec. 3.2): the next-token logit of each candidate's letter right after
  the assistant turn opens. The model must point from the answer position back to the right line.
- `inline` (llmrec's own; a pointwise readout in one pass): the logit of a fixed token (" Yes") at the last
  token of each candidate's line. Each candidate is scored where it is read, attending to the history
  above it, so nothing has to be pointed at; a causal model still lets a candidate see those listed
  before it, which the two orderings of `llm_scores` average out.

Both compute the output layer on at most N positions per prompt (`logits_to_keep=1` for letters, the final
hidden states times one output row for inline), so scoring costs one prefill per prompt.
"""

from __future__ import annotations

import re
import string
from typing import Any

import torch
import torch.nn.functional as F

from llmrec.errors import LlmrecError

LETTERS = string.ascii_uppercase
SCORINGS = ("letter", "inline")
READOUT = " Yes"  # inline: the token whose logit scores the candidate on its line


def letter_ids(tokenizer: Any, n: int) -> list[int]:
    """Token ids of "A".."<n-th letter>"; each letter must be one token of its own."""
    if n > len(LETTERS):
        raise LlmrecError(f"at most {len(LETTERS)} candidates can be lettered, not {n}")
    ids = [tokenizer.encode(c, add_special_tokens=False) for c in LETTERS[:n]]
    if any(len(i) != 1 for i in ids):
        raise LlmrecError("this tokenizer splits a capital letter into several tokens; the verbalizer needs one each")
    return [i[0] for i in ids]


def shorten_title(title: str, max_chars: int) -> str:
    """Cut a title to `max_chars`, keeping a trailing " (year)": the release year is a cue a cut would drop."""
    if len(title) <= max_chars:
        return title
    year = re.search(r" \(\d{4}\)$", title)
    if year is None or len(year.group()) >= max_chars:
        return title[:max_chars]
    return title[: max_chars - len(year.group())].rstrip() + year.group()


def candidate_lines(candidates: list[str], ranks: list[int] | None) -> list[str]:
    """"A. <title>" per candidate (newlines in titles become spaces), "(rank r)" after it when ranks are given."""
    return [f"{LETTERS[i]}. {' '.join(title.split())}" + (f" (rank {ranks[i]})" if ranks else "")
            for i, title in enumerate(candidates)]


def render_prompt(history: list[str], candidates: list[str], ranks: list[int] | None, system: str | None,
                  ) -> list[dict[str, str]]:
    """Chat messages: the user's recent titles, then the lettered candidates (with the retriever's rank
    when `ranks` is given), asking for one letter."""
    text = (f"Watched, oldest first: {'; '.join(history)}.\nCandidates:\n"
            + "\n".join(candidate_lines(candidates, ranks))
            + "\nWhich candidate will the user watch next? Answer with its letter.")
    return [*([{"role": "system", "content": system}] if system else []), {"role": "user", "content": text}]


class Verbalizer:
    """Encodes rendered prompts, batches them, and reads (B, N) candidate logits from one forward pass."""

    def __init__(self, tokenizer: Any, n: int, scoring: str = "letter"):
        if scoring not in SCORINGS:
            raise LlmrecError(f"--scoring must be one of {', '.join(SCORINGS)}, not {scoring!r}")
        self.tokenizer, self.n, self.scoring = tokenizer, n, scoring
        self.letters = letter_ids(tokenizer, n)
        readout = tokenizer.encode(READOUT, add_special_tokens=False)
        if len(readout) != 1:
            raise LlmrecError(f"this tokenizer splits {READOUT!r} into several tokens; --scoring inline needs one")
        self.readout = readout[0]

    def encode(self, conversations: list[list[dict[str, str]]]) -> list[dict[str, list[int]]]:
        """Chat messages of `render_prompt` -> {"input_ids"} per prompt (generation prompt added), plus
        "positions" for inline: the index of the token holding each candidate line's last character."""
        texts = self.tokenizer.apply_chat_template(conversations, tokenize=False, add_generation_prompt=True)
        if self.scoring == "letter":
            return [{"input_ids": ids} for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]
        enc = self.tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
        out = []
        for text, ids, offsets in zip(texts, enc["input_ids"], enc["offset_mapping"]):
            ends, start = [], text.index("\nCandidates:\n")
            for letter in LETTERS[: self.n]:
                start = text.index(f"\n{letter}. ", start) + 1
                ends.append(text.index("\n", start) - 1)  # the line's last character
            token_of = {c: t for t, (a, b) in enumerate(offsets) for c in range(a, b)}
            out.append({"input_ids": ids, "positions": [token_of[e] for e in ends]})
        return out

    def collate(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Left-pads (the tokenizer's own `pad`) so each prompt ends at the last position; inline positions
        shift by each prompt's padding; "label" becomes "labels", "teacher" (the retriever's scores) (B, N)."""
        batch = dict(self.tokenizer.pad({"input_ids": [f["input_ids"] for f in features]}, padding=True,
                                        padding_side="left", return_tensors="pt"))
        if self.scoring == "inline":
            width = batch["input_ids"].shape[1]
            batch["positions"] = torch.tensor([[p + width - len(f["input_ids"]) for p in f["positions"]]
                                               for f in features])  # (B, N)
        if "label" in features[0]:
            batch["labels"] = torch.tensor([f["label"] for f in features])
        if "teacher" in features[0]:
            batch["teacher"] = torch.tensor([f["teacher"] for f in features], dtype=torch.float32)  # (B, N)
        return batch

    def logits(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """-> (B, N) candidate logits (before any softmax) of a collated batch."""
        if self.scoring == "letter":
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=1)
            return out.logits[:, -1, self.letters].float()  # (B, N)
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=1,
                    output_hidden_states=True)
        hidden = out.hidden_states[-1]  # (B, L, D), after the final norm
        picked = hidden.gather(1, batch["positions"][..., None].expand(-1, -1, hidden.shape[-1]))  # (B, N, D)
        head = getattr(model, "module", model).get_output_embeddings()  # DDP wraps the model in .module
        bias = None if head.bias is None else head.bias[self.readout : self.readout + 1]
        return F.linear(picked, head.weight[self.readout : self.readout + 1], bias).squeeze(-1).float()  # (B, N)

    @torch.no_grad()
    def scores(self, model: Any, prompts: list[dict[str, list[int]]], batch_size: int = 16,
               progress: bool = False) -> torch.Tensor:
        """Encoded prompts -> (P, N) log-softmax over each prompt's candidates. Batches hold prompts of similar
        length (less padding to compute); the rows come back in the prompts' order."""
        from tqdm.auto import tqdm

        device = next(model.parameters()).device
        by_length = sorted(range(len(prompts)), key=lambda i: len(prompts[i]["input_ids"]))
        out = torch.zeros(len(prompts), self.n)
        for a in tqdm(range(0, len(prompts), batch_size), disable=not progress, desc="scoring"):
            chunk = by_length[a : a + batch_size]
            batch = {k: v.to(device) for k, v in self.collate([prompts[i] for i in chunk]).items()}
            out[chunk] = self.logits(model, batch).log_softmax(-1).cpu()
        return out
