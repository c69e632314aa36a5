"""The personalized LoRA layer: PEFT's `lora.Linear` whose update is mixed per example by the user gate.

Registered through PEFT's custom-module dispatch (`LoraConfig._register_custom_module({nn.Linear: cls})`), so
PEFT creates, marks trainable, saves and loads its `lora_A` / `lora_B` weights as for any LoRA; only the
forward pass (and the shapes, for RecLoRA) differ. Hand-written: PEFT has no per-example expert mixture.
With g (B, K) the gate of the example's user and s = lora_alpha / r:

iLoRA (Kong et al. 2024, "Customizing Language Models with Instance-wise LoRA for Sequential
Recommendation"): one rank-r LoRA split into K experts of rank r/K (rows of A, columns of B),

    h = W x + s * sum_k g_k B_k A_k x        A = [A_1; ...; A_K] (r, in), B = [B_1 ... B_K] (out, r)

RecLoRA (Zhu et al. 2024, "Lifelong Personalized Low-Rank Adaptation of Large Language Models for
Recommendation"): a bank of K meta-LoRA down-projections mixed per user, one shared up-projection,

    h = W x + s * B A_p x,   A_p = sum_k g_k A_k        A = [A_1; ...; A_K] (K r, in), B (out, r)

With K = 1 (g = 1) both are exactly PEFT's LoRA. The delta depends on the user, so it cannot be merged into W.
"""

from __future__ import annotations

import functools
import math
from typing import Any, ClassVar

import torch
from peft.tuners.lora import Linear as LoraLinear
from torch import nn

from llmrec.errors import LlmrecError
from llmrec.plora.gate import GateSlot

SHAPES = ("ilora", "reclora")


class PersonalLinear(LoraLinear):
    """A LoRA linear layer with K experts mixed by the gate that `gate_slot` holds for the current forward."""

    shape: ClassVar[str] = "ilora"
    n_experts: ClassVar[int] = 1
    gate_slot: GateSlot | None = None  # set on each layer by `llmrec.plora.model.personalize`

    def update_layer(self, adapter_name: str, r: int, lora_alpha: int, config: Any, **kwargs: Any) -> None:
        k = self.n_experts
        if self.shape == "ilora" and r % k:
            raise LlmrecError(f"iLoRA splits the rank into experts: lora_r {r} is not a multiple of n_experts {k}")
        if config.init_lora_weights not in (True, False, "gaussian"):  # PiSSA, OLoRA...: rewrite W for one plain LoRA
            raise LlmrecError(f"personalized LoRA starts from init_lora_weights true, false or gaussian, not "
                              f"{config.init_lora_weights!r}")
        # RecLoRA: PEFT builds A with K * r rows (the bank); B is then replaced by the shared (out, r) matrix.
        super().update_layer(adapter_name, r if self.shape == "ilora" else k * r, lora_alpha, config, **kwargs)
        if adapter_name in self.lora_variant:  # DoRA & co. have their own forward, which would ignore the gate
            raise LlmrecError(f"personalized LoRA does not combine with the LoRA variant "
                              f"{type(self.lora_variant[adapter_name]).__name__} (use_dora and the like)")
        if self.shape == "ilora":
            return
        a = self.lora_A[adapter_name].weight
        b = nn.Linear(r, self.out_features, bias=config.lora_bias).to(a.device, a.dtype)
        if config.init_lora_weights is not False:
            nn.init.zeros_(b.weight)
            if b.bias is not None:
                nn.init.zeros_(b.bias)
        b.requires_grad_(a.requires_grad)
        self.lora_B[adapter_name] = b
        self.r[adapter_name] = r
        self.scaling[adapter_name] = lora_alpha / (math.sqrt(r) if config.use_rslora else r)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if kwargs.get("adapter_names") is not None:
            raise LlmrecError("personalized LoRA does not take adapter_names (mixed adapter batches): users pick the "
                              "experts through the gate")
        if self.disable_adapters or self.merged:
            return super().forward(x, *args, **kwargs)
        if self.gate_slot is None:
            raise LlmrecError("personalized LoRA layer without a gate slot: build the model with personalize()")
        result = self.base_layer(x, *args, **kwargs)
        dtype = result.dtype
        for adapter in self.active_adapters:
            if adapter not in self.lora_A:
                continue
            lora_a, lora_b = self.lora_A[adapter], self.lora_B[adapter]
            x_a = self._cast_input_dtype(x, lora_a.weight.dtype)
            gate = self.gate_slot.read(x_a.shape[0]).to(lora_a.weight.dtype)  # (B, K)
            gate = gate.view(gate.shape[0], *([1] * (x_a.dim() - 2)), gate.shape[1])  # (B, 1.., K)
            h = lora_a(self.lora_dropout[adapter](x_a))  # (B, .., r) iLoRA, (B, .., K r) RecLoRA
            if self.shape == "ilora":
                h = h * gate.repeat_interleave(h.shape[-1] // self.n_experts, dim=-1)  # g_k on expert k's ranks
            else:
                h = (h.unflatten(-1, (self.n_experts, -1)) * gate.unsqueeze(-1)).sum(-2)  # A_p x = sum g_k A_k x
            result = result + lora_b(h) * self.scaling[adapter]
        return result.to(dtype)

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        raise LlmrecError("a personalized LoRA cannot be merged into the base weights: its update depends on the user")

    def get_delta_weight(self, adapter: str) -> torch.Tensor:
        raise LlmrecError("a personalized LoRA has no single delta weight: its update depends on the user")

    def __repr__(self) -> str:
        return f"plora.{self.shape}[K={self.n_experts}]." + super().__repr__()


@functools.cache
def personal_linear(shape: str, n_experts: int) -> type[PersonalLinear]:
    """The layer class for one (shape, K), for `LoraConfig._register_custom_module({nn.Linear: cls})`."""
    if shape not in SHAPES:
        raise LlmrecError(f"unknown personalized LoRA shape {shape!r}; valid: {', '.join(SHAPES)}")
    if n_experts < 1:
        raise LlmrecError(f"n_experts must be at least 1, got {n_experts}")
    return type(f"PersonalLinear_{shape}_{n_experts}", (PersonalLinear,), {"shape": shape, "n_experts": n_experts})
