"""The letter verbalizer: a prompt lists candidates as A., B., ...; each candidate's score is the next-token
logit of its letter right after the assistant turn opens (LlamaRec's verbalizer, Yue et al. 2023, Sec. 3.2).
One forward pass scores all N candidates, and only the last position's logits are computed
(`logits_to_keep=1`), so scoring costs one prefill per prompt.
"""

from __future__ import annotations

import string
from typing import Any

import torch

from llmrec.errors import LlmrecError

LETTERS = string.ascii_uppercase


def letter_ids(tokenizer: Any, n: int) -> list[int]:
    """Token ids of "A".."<n-th letter>"; each letter must be one token of its own."""
    if n > len(LETTERS):
        raise LlmrecError(f"at most {len(LETTERS)} candidates can be lettered, not {n}")
    ids = [tokenizer.encode(c, add_special_tokens=False) for c in LETTERS[:n]]
    if any(len(i) != 1 for i in ids):
        raise LlmrecError("this tokenizer splits a capital letter into several tokens; the verbalizer needs one each")
    return [i[0] for i in ids]


def render_prompt(history: list[str], candidates: list[str], ranks: list[int] | None, system: str | None,
                  ) -> list[dict[str, str]]:
    """Chat messages: the user's recent titles, then the lettered candidates (with the retriever's rank
    when `ranks` is given), asking for one letter."""
    lines = [f"{LETTERS[i]}. {title}" + (f" (rank {ranks[i]})" if ranks else "") for i, title in enumerate(candidates)]
    text = (f"Watched, oldest first: {'; '.join(history)}.\nCandidates:\n" + "\n".join(lines)
            + "\nWhich candidate will the user watch next? Answer with its letter.")
    return [*([{"role": "system", "content": system}] if system else []), {"role": "user", "content": text}]


def left_pad(tokenizer: Any, sequences: list[list[int]]) -> dict[str, torch.Tensor]:
    """-> {"input_ids", "attention_mask"} (B, L), left-padded so every prompt ends at the last position."""
    return tokenizer.pad({"input_ids": sequences}, padding=True, padding_side="left", return_tensors="pt")


def letter_logits(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, letters: list[int],
                  ) -> torch.Tensor:
    """(B, L) left-padded prompts -> (B, N) logits of the N letters at the next position."""
    out = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=1)
    return out.logits[:, -1, letters].float()  # (B, N)


@torch.no_grad()
def letter_scores(model: Any, tokenizer: Any, prompts: list[list[int]], n: int, batch_size: int = 16,
                  progress: bool = False) -> torch.Tensor:
    """Tokenized prompts -> (P, n) log-softmax over the letters: the score of each lettered candidate."""
    from tqdm.auto import tqdm

    letters = letter_ids(tokenizer, n)
    device = next(model.parameters()).device
    out = []
    for a in tqdm(range(0, len(prompts), batch_size), disable=not progress, desc="scoring"):
        batch = left_pad(tokenizer, prompts[a : a + batch_size])
        out.append(letter_logits(model, batch["input_ids"].to(device), batch["attention_mask"].to(device),
                                 letters).log_softmax(-1).cpu())
    return torch.cat(out) if out else torch.zeros(0, n)
