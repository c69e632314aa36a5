"""Loading a causal LM for inference, the same way for every scorer: checkpoint ranking, the transformers
chat backend and the re-ranker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from llmrec.errors import LlmrecError
from llmrec.hardware import pick_device
from llmrec.hub.resolve import is_personalized, resolve_model


def load_for_inference(name_or_folder: str | Path, merge: bool = False) -> Any:
    """An embedded name, a model folder or a PEFT adapter folder (its base is read from the adapter config)
    -> the model in float32, in eval mode, on `pick_device()`. `merge` folds LoRA into the base weights: the
    same outputs at the cost of the base model's forward pass alone."""
    path = resolve_model(str(name_or_folder))
    if is_personalized(path):  # PEFT alone would load it as one plain LoRA summing every expert
        raise LlmrecError(f"{path} is a personalized LoRA (plora.json): its output depends on each user's gate, "
                          "which this scorer does not pass; load it with llmrec.plora.inference.load_personalized "
                          "(llmrec eval rank --checkpoint and the hf chat backend do)")
    if (Path(path) / "adapter_config.json").exists():
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        model = merged(model) if merge else model
    else:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return model.to(pick_device()).eval()


def merged(model: Any) -> Any:
    """A PEFT model with its LoRA folded into the base weights (the same outputs at the cost of the base
    model's forward pass alone); any other model as it is."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
