"""Load the model to fine-tune: pretrained (hub id, path or embedded default) or from scratch (a vocabulary of
the item tokens only: `scratch.py`); add the item index's tokens; build the PEFT config (LoRA, or QLoRA on a
4-bit model) from TRL's ModelConfig."""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import ModelConfig, get_peft_config, get_quantization_config

from llmrec.errors import LlmrecError
from llmrec.indexing.item_index import ItemIndex
from llmrec.hub.resolve import resolve_model
from llmrec.training.config import RecArguments
from llmrec.training.scratch import scratch_model, scratch_tokenizer


def load_for_training(margs: ModelConfig, rec: RecArguments, index: ItemIndex) -> tuple[Any, Any, Any]:
    """-> (model, tokenizer, peft_config or None). The index's new tokens are added and embeddings resized."""
    path = resolve_model(margs.model_name_or_path or "smollm2-135m")
    if rec.model_init == "scratch":  # only the architecture of `path`; the vocabulary is the index's tokens
        tokenizer = scratch_tokenizer(index)
        model = scratch_model(path, tokenizer, rec.scratch_hidden_size, rec.scratch_layers, rec.scratch_heads)
    else:
        tokenizer = AutoTokenizer.from_pretrained(path)
        quantization = get_quantization_config(margs)
        dtype = margs.dtype if margs.dtype in (None, "auto") else getattr(torch, margs.dtype)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, quantization_config=quantization)
    index.add_to_tokenizer(tokenizer, model)
    return model, tokenizer, get_peft_config(margs) if margs.use_peft else None


def check_item_token_decay(rec: RecArguments, weight_decay: float, use_peft: bool) -> None:
    """Refuse weight decay on a LoRA run whose item-token rows train: AdamW would decay every row of the
    unfrozen embedding matrix, the pretrained vocabulary included (the gradient mask does not stop decay)."""
    if use_peft and rec.train_new_tokens and weight_decay > 0:
        raise LlmrecError("weight_decay > 0 with LoRA would decay every embedding row while the item tokens train; "
                          "set weight_decay: 0 or train_new_tokens: false")


def train_item_tokens(model: Any, tokenizer: Any, index: ItemIndex, rec: RecArguments) -> list[int]:
    """Under LoRA with `train_new_tokens`, make the index's new tokens' embedding rows trainable
    (`train_embedding_rows`) -> their token ids ([] when nothing was unfrozen)."""
    new_ids = tokenizer.convert_tokens_to_ids(index.new_tokens) if rec.train_new_tokens else []
    if new_ids:
        train_embedding_rows(model, new_ids)
    return new_ids


def train_embedding_rows(model: Any, token_ids: list[int]) -> None:
    """Make only the given rows of the (input, and tied output) embedding trainable, under PEFT.

    PEFT's `trainable_token_indices` would do this, but it wraps the tied LM head, and TRL's SFTTrainer
    computes the loss with a fused LM head that reads `lm_head.weight`/`.bias` directly, bypassing (and
    failing on) the wrapper. Instead the embedding matrix is unfrozen and a gradient hook zeroes every
    row but the new tokens'; PEFT saves the resized embedding beside the adapter (vocabulary changed)."""
    weight = model.get_input_embeddings().weight
    mask = torch.zeros(weight.shape[0], 1, dtype=weight.dtype, device=weight.device)  # (V, 1)
    mask[token_ids] = 1.0
    weight.requires_grad_(True)
    weight.register_hook(lambda grad: grad * mask)
