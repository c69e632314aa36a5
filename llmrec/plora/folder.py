"""A personalized LoRA folder: PEFT's adapter files plus the gate, all safetensors and JSON (no pickle).

    adapter_config.json, adapter_model.safetensors   PEFT's LoRA weights (A, B of every layer, all experts;
                                                     the embedding too when item tokens were added and trained)
    plora.safetensors                                the router (and a learned user-id table)
    plora.json                                       K, shape, temperature, top-k, router size, the user
                                                     representation (kind, dim, encoder folder or user ids)

Loading rebuilds the layers from plora.json and refuses any tensor whose shape disagrees with it, naming the
file, the tensor and the plora.json field behind the shape, before torch would fail inside load_state_dict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file, save_file
from torch import nn

from llmrec.artifacts import read_json, write_json
from llmrec.errors import LlmrecError
from llmrec.plora.layer import personal_linear
from llmrec.plora.model import Personalizer, PLoRASettings, attach
from llmrec.plora.users import IdUsers, SasrecUsers, UserSource

FORMAT = 1
GATE_FILE, CONFIG_FILE, ADAPTER_FILE = "plora.safetensors", "plora.json", "adapter_model.safetensors"


def gate_state(personalizer: Personalizer) -> dict[str, torch.Tensor]:
    """The personalizer's own weights (router, id table): the frozen encoder lives in its own folder."""
    return {k: v.detach().contiguous().cpu() for k, v in personalizer.state_dict().items()
            if not k.startswith("users.encoder.")}


def write_gate(personalizer: Personalizer, folder: str | Path) -> None:
    """plora.safetensors and plora.json (PEFT writes the adapter files beside them)."""
    folder = Path(folder)
    save_file(gate_state(personalizer), folder / GATE_FILE)
    users = personalizer.users
    info: dict[str, Any] = {"format": FORMAT, **vars(personalizer.settings), "user_repr": users.kind,
                            "repr_dim": users.dim}
    if isinstance(users, SasrecUsers):
        info["encoder"] = users.folder
    elif isinstance(users, IdUsers):
        info["user_ids"] = users.user_ids
    write_json(folder / CONFIG_FILE, info)


def save_plora(model: PeftModel, folder: str | Path) -> Path:
    """Write the adapter folder (PEFT), the gate weights and plora.json into `folder`."""
    model.save_pretrained(folder)
    write_gate(model.personalizer, folder)
    return Path(folder)


def read_gate(personalizer: Personalizer, folder: str | Path, fields: str | None = None) -> None:
    """Load plora.safetensors into `personalizer`, refusing tensors of another shape (a resumed checkpoint's too)."""
    path, s = Path(folder) / GATE_FILE, personalizer.settings
    fields = fields or (f"{Path(folder) / CONFIG_FILE} (field 'n_experts' = {s.n_experts}, 'repr_dim' = "
                        f"{personalizer.users.dim}, 'router_hidden' = {s.router_hidden})")
    gates = load_file(path)
    _check_shapes(gates, gate_state(personalizer), path, fields)
    personalizer.load_state_dict({k: v.to(personalizer.device) for k, v in gates.items()}, strict=False)


def _users(info: dict[str, Any], where: Path, encoder: str | Path | None, dataset: Any = None) -> UserSource:
    from llmrec.collab.checkpoint import load_collab

    kind, dim = info.get("user_repr"), info.get("repr_dim")
    if not isinstance(dim, int) or dim < 1:
        raise LlmrecError(f"{where}: field 'repr_dim' must be a positive integer, got {dim!r}")
    if kind == "id":
        ids = info.get("user_ids")
        if not isinstance(ids, list):
            raise LlmrecError(f"{where}: field 'user_ids' must be a list of user ids for user_repr 'id'")
        return IdUsers(ids, dim)
    if kind != "sasrec":
        raise LlmrecError(f"{where}: field 'user_repr': {kind!r} is not one of sasrec, id")
    source = encoder or info.get("encoder")
    if not source:
        raise LlmrecError(f"{where}: field 'encoder' names no SASRec folder; pass encoder=...")
    users = SasrecUsers(load_collab(source, dataset), source)  # with a dataset: refuses another catalog
    if users.dim != dim:
        raise LlmrecError(f"{Path(source) / 'config.json'}: field 'dim' is {users.dim}, but {where} was trained "
                          f"with repr_dim {dim}: not the encoder this adapter was trained with")
    return users


def _check_shapes(found: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], path: Path, fields: str) -> None:
    missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing or extra:
        raise LlmrecError(f"{path}: tensors do not match the model that {fields} describe: "
                          f"missing {missing[:3]}, unexpected {extra[:3]}")
    for key, want in expected.items():
        if found[key].shape != want.shape:
            raise LlmrecError(f"{path}: tensor {key} has shape {tuple(found[key].shape)}, but {fields} give "
                              f"{tuple(want.shape)}")


def _trained_embedding(model: nn.Module, adapter: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """The input embedding matrix PEFT saved in the adapter file (a run whose item tokens trained), if any."""
    layer = model.get_input_embeddings()
    name = next(n for n, m in model.named_modules() if m is layer)
    return adapter.get(f"base_model.model.{name}.weight")


def load_plora(model: nn.Module, folder: str | Path, is_trainable: bool = False,
               encoder: str | Path | None = None, dataset: Any = None) -> PeftModel:
    """The base `model` (a transformers model) with the personalized adapter in `folder`; `encoder` replaces
    the SASRec folder recorded in plora.json (e.g. after moving both); a `dataset` (PreparedDataset) makes the
    SASRec encoder's catalog checked against it."""
    folder = Path(folder)
    where = folder / CONFIG_FILE
    info = read_json(where)
    if info.get("format") != FORMAT:
        raise LlmrecError(f"{where}: field 'format' is {info.get('format')!r}; this llmrec reads format {FORMAT}")
    try:
        settings = PLoRASettings(**{f: info[f] for f in PLoRASettings.__dataclass_fields__})
    except KeyError as e:
        raise LlmrecError(f"{where}: field {e.args[0]!r} is missing") from None
    settings.check(str(where))
    personalizer = Personalizer(settings, _users(info, where, encoder, dataset))

    read_gate(personalizer, folder)

    config = LoraConfig.from_pretrained(folder)
    config.inference_mode = not is_trainable
    config._register_custom_module({nn.Linear: personal_linear(settings.shape, settings.n_experts)})
    adapter = load_file(folder / ADAPTER_FILE)
    embedding = _trained_embedding(model, adapter)
    if embedding is not None and embedding.shape[0] != model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(embedding.shape[0])  # items as new tokens: their rows are in the adapter
    peft_model = get_peft_model(model, config)
    expected = get_peft_model_state_dict(peft_model, save_embedding_layers=embedding is not None)
    fields = f"{where} (field 'n_experts' = {settings.n_experts}, shape {settings.shape}) with lora r = {config.r}"
    _check_shapes(adapter, expected, folder / ADAPTER_FILE, fields)
    set_peft_model_state_dict(peft_model, adapter)
    attach(peft_model, personalizer)
    if not is_trainable:
        personalizer.requires_grad_(False)
        peft_model.eval()
    return peft_model
