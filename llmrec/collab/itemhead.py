"""An LLM as the sequence encoder of a next-item model: collaborative item tokens in, an item head out.

E4SRec (Li et al., "E4SRec: An Elegant Effective Efficient Extensible Solution of Large Language Models for
Sequential Recommendation", 2023, Sec. 3): each item of a user's history enters the LLM as ONE token, the
item's ID embedding from a trained SASRec (frozen) mapped by a linear layer into the LLM's input space
(LLaRA's "item tokens", Liao et al. 2024, without the title words); a LoRA adapts the LLM; a linear head
over the LLM's last hidden state scores the whole catalog in one forward pass, trained with cross-entropy
over all items. No text is generated, so there is nothing to ground and nothing to hallucinate.

As in SASRec (`next_item.NextItemModel`), one forward pass over a sequence trains every next-item target at
once. The LLM's own positions (RoPE) count from the first real item; its vocabulary and LM head are not used
(the backbone is loaded without them). Its frozen weights are not saved: the folder holds the item table,
the projection, the LoRA and the head, and names the LLM it adapts.
"""

from __future__ import annotations

from typing import Any

import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers import AutoModel

from llmrec.collab.next_item import NextItemModel
from llmrec.errors import LlmrecError
from llmrec.hardware import choose_bf16
from llmrec.hub.resolve import resolve_model

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def is_backbone(key: str) -> bool:
    """A frozen LLM weight (loaded from the LLM, never saved); LoRA weights are saved."""
    return key.startswith("llm.") and "lora_" not in key


class ItemHeadLLM(NextItemModel):
    kind = "itemhead"
    prefers_accelerator = True

    def __init__(self, n_items: int, llm: str = "smollm2-135m", dim: int = 64, max_len: int = 50, lora_r: int = 8,
                 dropout: float = 0.1, frozen_items: bool = True):
        super().__init__()
        self.n_items, self.llm_name, self.dim, self.max_len = n_items, llm, dim, max_len
        self.lora_r, self.dropout, self.frozen_items = lora_r, dropout, frozen_items
        backbone = AutoModel.from_pretrained(resolve_model(llm), dtype=torch.float32)  # no LM head
        width = backbone.config.hidden_size
        self.llm = get_peft_model(backbone, LoraConfig(r=lora_r, lora_alpha=2 * lora_r, lora_dropout=dropout,
                                                       target_modules=LORA_TARGETS))
        self.item_emb = nn.Embedding(n_items + 1, dim, padding_idx=0)  # SASRec's table (take_item_embeddings)
        self.item_emb.weight.requires_grad_(not frozen_items)
        self.item_proj = nn.Linear(dim, width)  # ID space -> the LLM's input space
        self.emb_dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width, n_items)  # the item head: last hidden state -> every catalog item
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        self.bf16 = choose_bf16(None)[0]  # autocast where the hardware computes bf16 natively

    def hyperparameters(self) -> dict[str, Any]:
        return {"n_items": self.n_items, "llm": self.llm_name, "dim": self.dim, "max_len": self.max_len,
                "lora_r": self.lora_r, "dropout": self.dropout, "frozen_items": self.frozen_items}

    def take_item_embeddings(self, sasrec: NextItemModel) -> None:
        """Copy a trained SASRec's item table (same catalog, same width) into the item tokens."""
        table = getattr(sasrec, "item_emb", None)
        if table is None or tuple(table.weight.shape) != tuple(self.item_emb.weight.shape):
            got = None if table is None else tuple(table.weight.shape)
            raise LlmrecError(f"--item_embeddings: a SASRec with an item table of shape "
                              f"{tuple(self.item_emb.weight.shape)} (n_items + 1, --dim) is needed, got {got}")
        with torch.no_grad():
            self.item_emb.weight.copy_(table.weight)

    def hidden(self, codes: torch.Tensor) -> torch.Tensor:
        real = codes != 0  # (B, L)
        x = self.emb_dropout(self.item_proj(self.item_emb(codes)))  # (B, L, H)
        positions = (real.long().cumsum(1) - 1).clamp(min=0)  # left padding: the first real item is position 0
        with torch.autocast(codes.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            states = self.llm(inputs_embeds=x, attention_mask=real.long(), position_ids=positions).last_hidden_state
        return states.float()  # (B, L, H)

    def logits(self, states: torch.Tensor) -> torch.Tensor:
        return self.head(states.float())  # fp32: bf16 logits would tie neighbouring items in the ranking

    # Only what training changes is saved; the frozen LLM comes from `llm` when the folder is loaded.
    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        return {k: v for k, v in super().state_dict(*args, **kwargs).items() if not is_backbone(k)}

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        missing = [k for k in result.missing_keys if not is_backbone(k)]
        if strict and (missing or result.unexpected_keys):
            raise LlmrecError(f"itemhead weights do not fit the model: missing {missing[:3]}, unexpected "
                              f"{result.unexpected_keys[:3]} (another --llm, --dim or --lora_r?)")
        return result
