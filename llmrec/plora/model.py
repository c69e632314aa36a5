"""Personalize a transformers model: PEFT LoRA with personalized layers, plus the user gate computed once per
forward pass.

    model = personalize(base, LoraConfig(r=8, target_modules=[...]), PLoRASettings(n_experts=4), users)
    model(input_ids=..., labels=..., user_input=...)      # user_input: see llmrec.plora.users
    with model.personalizer.gate_for(user_input):          # generation
        model.generate(input_ids=..., num_beams=4)

`personalize` registers the layer class with PEFT (`LoraConfig._register_custom_module`), wraps the model with
`get_peft_model`, attaches the `Personalizer` (user source + router, the only non-LoRA weights) to the PEFT
model, and adds a forward pre-hook to the transformers model that takes `user_input` out of the keyword
arguments, computes the gate and puts it in the layers' `GateSlot`. transformers' `generate` refuses unknown
keyword arguments, so generation runs inside `model.personalizer.gate_for(user_input)`: the layers repeat each
user's gate over that prompt's beams or samples (`GateSlot.read`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from llmrec.errors import LlmrecError
from llmrec.plora.gate import GateSlot, Router, gate_weights
from llmrec.plora.layer import SHAPES, PersonalLinear, personal_linear
from llmrec.plora.users import UserSource

USER_INPUT = "user_input"


@dataclass
class PLoRASettings:
    """The personalization options (the LoRA rank, alpha, dropout and targets come from the LoraConfig)."""

    n_experts: int = 4  # K
    shape: str = "ilora"  # ilora: rank r split into K experts of r/K; reclora: K meta-LoRAs A_k (rank r), shared B
    temperature: float = 1.0
    top_k: int | None = None  # None: all K experts
    router_hidden: int = 0  # 0: linear router; > 0: MLP with this hidden size

    def check(self, where: str = "settings") -> None:
        if self.shape not in SHAPES:
            raise LlmrecError(f"{where}: field 'shape': {self.shape!r} is not one of {', '.join(SHAPES)}")
        if not isinstance(self.n_experts, int) or self.n_experts < 1:
            raise LlmrecError(f"{where}: field 'n_experts' must be an integer >= 1, got {self.n_experts!r}")
        if not self.temperature > 0:
            raise LlmrecError(f"{where}: field 'temperature' must be positive, got {self.temperature!r}")
        if self.top_k is not None and not 1 <= self.top_k <= self.n_experts:
            raise LlmrecError(f"{where}: field 'top_k' must be in 1..n_experts ({self.n_experts}), got {self.top_k}")
        if self.router_hidden < 0:
            raise LlmrecError(f"{where}: field 'router_hidden' must be >= 0, got {self.router_hidden}")


class Personalizer(nn.Module):
    """user_input -> (B, K) gate: softmax(router(u) / T), optional top-k, uniform 1/K for unknown users."""

    def __init__(self, settings: PLoRASettings, users: UserSource):
        super().__init__()
        settings.check()
        self.settings, self.users = settings, users
        self.router = Router(users.dim, settings.n_experts, settings.router_hidden)
        self.slot = GateSlot()

    def forward(self, user_input: torch.Tensor) -> torch.Tensor:
        reps, known = self.users(user_input)  # (B, D), (B,)
        s = self.settings
        gate = gate_weights(self.router(reps), s.temperature, s.top_k)  # (B, K)
        return torch.where(known[:, None], gate, torch.full_like(gate, 1.0 / s.n_experts))

    @property
    def device(self) -> torch.device:
        return next(self.router.parameters()).device

    def set_gate(self, user_input: torch.Tensor) -> torch.Tensor:
        self.slot.gate = self(user_input)
        return self.slot.gate

    @contextmanager
    def gate_for(self, user_input: torch.Tensor) -> Iterator[torch.Tensor]:
        """Every forward inside uses these users' gate unless given its own user_input (e.g. a hand-written
        decoding loop that calls the model step by step)."""
        gate = self.set_gate(user_input)
        self.slot.pinned = True
        try:
            yield gate
        finally:
            self.slot.pinned, self.slot.gate = False, None


def reentrant_checkpointing(model: nn.Module) -> bool:
    """Whether a layer of `model` checkpoints with use_reentrant=True. Reentrant recomputation backpropagates
    into the shared gate once per layer through a graph already freed, so personalized LoRA refuses it."""
    return any(getattr(m, "gradient_checkpointing", False)
               and getattr(getattr(m, "_gradient_checkpointing_func", None), "keywords", {}).get("use_reentrant")
               for m in model.modules())


def _gate_hook(personalizer: Personalizer):
    def hook(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        user_input = kwargs.pop(USER_INPUT, None)
        if module.training and torch.is_grad_enabled() and reentrant_checkpointing(module):
            raise LlmrecError("personalized LoRA needs non-reentrant gradient checkpointing (transformers' default):"
                              " remove use_reentrant: true from gradient_checkpointing_kwargs")
        if user_input is not None:
            personalizer.set_gate(user_input)
        elif not personalizer.slot.pinned:
            personalizer.slot.gate = None  # never a previous batch's gate: the layers then say what is missing
        return args, kwargs

    return hook


def personalize(model: nn.Module, lora_config: LoraConfig, settings: PLoRASettings, users: UserSource,
                adapter_name: str = "default") -> PeftModel:
    """Wrap `model` (a transformers model) with personalized LoRA on lora_config's target modules (nn.Linear).

    lora_config.r is the total rank for iLoRA (K experts of rank r / K) and each meta-LoRA's rank for RecLoRA.
    The returned PEFT model holds the `Personalizer` as `.personalizer` (trainable router; a learned id table
    trains too, a SASRec encoder stays frozen). Pass `user_input` to each forward call; generate inside
    `gate_for(user_input)`."""
    settings.check()
    config = copy.deepcopy(lora_config)
    config._register_custom_module({nn.Linear: personal_linear(settings.shape, settings.n_experts)})
    peft_model = get_peft_model(model, config, adapter_name=adapter_name)
    return attach(peft_model, Personalizer(settings, users))


def attach(peft_model: PeftModel, personalizer: Personalizer) -> PeftModel:
    """Give every personalized layer the personalizer's gate slot and hook the gate into the forward pass."""
    layers = [m for m in peft_model.modules() if isinstance(m, PersonalLinear)]
    if not layers:
        raise LlmrecError("personalized LoRA: no nn.Linear among the target modules; check lora target_modules")
    for layer in layers:
        if layer.n_experts != personalizer.settings.n_experts or layer.shape != personalizer.settings.shape:
            raise LlmrecError(f"layers are {layer.shape} with {layer.n_experts} experts, the gate "
                              f"{personalizer.settings.shape} with {personalizer.settings.n_experts}")
        layer.gate_slot = personalizer.slot
    personalizer.to(next(peft_model.parameters()).device)
    peft_model.personalizer = personalizer  # registered as a submodule: the optimizer and .to() see it
    peft_model.get_base_model().register_forward_pre_hook(_gate_hook(personalizer), with_kwargs=True)
    return peft_model
