"""Ranking with a personalized LoRA folder (`llmrec eval rank --checkpoint`): the model and each row's user input.

The evaluation rows are the SFT recipe's prompts (llmrec.generation.ranking.checkpoint_rows); the user input is
built from them as in training (llmrec.plora.users.user_inputs): the encoder's positions of the row's shown
history, or the user's row of the id table. The trie beam search hands each live beam its prompt's user input.
The transformers chat backend (llmrec.generation.backends.TransformersChat) loads the folder the same way and
builds each conversation's user input from the items it shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM

from llmrec.artifacts import read_json
from llmrec.data.dataset import PreparedDataset
from llmrec.hardware import pick_device
from llmrec.hub.resolve import resolve_model
from llmrec.plora.folder import load_plora
from llmrec.plora.model import USER_INPUT
from llmrec.plora.users import user_inputs


def load_personalized(folder: str | Path, dataset: PreparedDataset | None = None) -> Any:
    """A recipes/plora.py folder on its base model (named in llmrec.json) -> the model in float32, eval mode, on
    `pick_device()`; a `dataset` makes the SASRec encoder's catalog checked against it."""
    settings = read_json(Path(folder) / "llmrec.json")
    base = AutoModelForCausalLM.from_pretrained(resolve_model(settings.get("base_model") or "smollm2-135m"),
                                                dtype=torch.float32)
    return load_plora(base, folder, dataset=dataset).to(pick_device()).eval()


def load_for_ranking(folder: str | Path, dataset: PreparedDataset, rows: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """-> the model (`load_personalized`) and {"user_input": one row per evaluation row}."""
    model = load_personalized(folder, dataset)
    return model, {USER_INPUT: user_inputs(model.personalizer.users, rows, dataset.items["item_id"].to_pylist())}
