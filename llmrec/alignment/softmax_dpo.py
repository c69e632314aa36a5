"""Softmax-DPO (S-DPO): DPO with many rejected items per prompt, as a subclass of TRL's `DPOTrainer`.

Chen et al., "On Softmax Direct Preference Optimization for Recommendation" (NeurIPS 2024), eq. 11:

    L = -log sigmoid( -log sum_k exp( beta * (r(neg_k) - r(pos)) ) ),   r(y) = log pi(y|x) - log pi_ref(y|x)

With one negative it is DPO's sigmoid loss, -log sigmoid(beta * (r(pos) - r(neg))) (tested against TRL's
own trainer). TRL tokenizes prompt/chosen/rejected; this subclass adds `rejected_list_ids` (one token list
per negative), a collator that stacks [chosen; negative 1; ...; negative K] into one (1+K)B batch, and a
`_compute_loss` that reads TRL's reference log-probabilities for that batch (the "ref" adapter copy of the
SFT adapter, or the adapter-disabled model) and applies the loss above. Hand-written because TRL has no
multi-negative loss; S-DPO's own code is a fork of TRL 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers.data.data_collator import DataCollatorMixin
from trl import DPOTrainer
from trl.trainer.utils import pad

from llmrec.errors import LlmrecError


def softmax_dpo_loss(chosen_logratios: torch.Tensor, rejected_logratios: torch.Tensor, beta: float) -> torch.Tensor:
    """(B,) r(pos) and (B, K) r(neg_k) -> (B,) S-DPO losses (eq. 11 above)."""
    margins = beta * (rejected_logratios - chosen_logratios[:, None])  # (B, K)
    return -F.logsigmoid(-torch.logsumexp(margins, dim=1))


@dataclass
class SoftmaxPreferenceCollator(DataCollatorMixin):
    """Rows of prompt_ids, chosen_ids and rejected_list_ids (K lists) -> one right-padded batch of (1+K)B
    sequences: the B chosen completions first, then negative 1 of every row, then negative 2, ... Every
    row must have the same K (the alignment data gives each row `n_negatives`)."""

    pad_token_id: int
    max_length: int | None = None
    return_tensors: str = "pt"

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        k = len(examples[0]["rejected_list_ids"])
        if any(len(e["rejected_list_ids"]) != k for e in examples):
            raise LlmrecError("softmax-DPO rows must all have the same number of negatives")
        completions = [[e["chosen_ids"] for e in examples]]
        completions += [[e["rejected_list_ids"][j] for e in examples] for j in range(k)]
        ids, masks = [], []
        for group in completions:
            for e, completion in zip(examples, group):
                sequence = (e["prompt_ids"] + completion)[: self.max_length]
                mask = ([0] * len(e["prompt_ids"]) + [1] * len(completion))[: self.max_length]
                ids.append(torch.tensor(sequence))
                masks.append(torch.tensor(mask, dtype=torch.long))
        return {
            "input_ids": pad(ids, padding_value=self.pad_token_id, padding_side="right"),  # ((1+K)B, L)
            "attention_mask": pad([torch.ones_like(m) for m in masks], padding_value=0, padding_side="right"),
            "completion_mask": pad(masks, padding_value=0, padding_side="right"),
            "group_size": torch.tensor(1 + k),
        }


def check_softmax_dpo_args(args: Any) -> None:
    """Refuse the DPOConfig options this loss does not implement, rather than ignore them: each changes how
    TRL pairs or weighs [chosen, rejected], which a (1+K)B batch does not have."""
    unsupported = {
        "precompute_ref_log_probs": (args.precompute_ref_log_probs, "reference log-probs are computed per batch"),
        "loss_type": (list(args.loss_type) != ["sigmoid"], "S-DPO replaces the DPO loss"),
        "loss_weights": (args.loss_weights is not None, "there is one loss"),
        "ld_alpha": (args.ld_alpha is not None, "not implemented for K negatives"),
        "use_weighting": (args.use_weighting, "not implemented for K negatives"),
        "f_divergence_type": (args.f_divergence_type != "reverse_kl", "S-DPO is derived for reverse KL"),
        "truncation_mode": (args.truncation_mode != "keep_start", "the collator keeps the start"),
        "pad_to_multiple_of": (args.pad_to_multiple_of is not None, "the collator pads to the longest"),
    }
    for name, (bad, why) in unsupported.items():
        if bad:
            raise LlmrecError(f"loss sdpo does not support --{name} {getattr(args, name)} ({why})")


class SoftmaxDPOTrainer(DPOTrainer):
    """TRL's DPOTrainer with the S-DPO loss over every row's `rejected_list` (conversational rows: a list of
    item strings, each the content of one assistant answer). Reference log-probabilities come from TRL's
    `compute_ref_log_probs`; precomputing them is not supported (TRL caches two per row, not 1+K)."""

    def __init__(self, *args: Any, **kwargs: Any):
        check_softmax_dpo_args(kwargs["args"])
        super().__init__(*args, **kwargs)
        self.data_collator = SoftmaxPreferenceCollator(self._tokenizer.pad_token_id, self.args.max_length)

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
        dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        tokenizer = self._tokenizer

        def tokenize_negatives(example: dict[str, Any]) -> dict[str, Any]:
            prompt_ids, out = example["prompt_ids"], []
            for negative in example["rejected_list"]:
                answer = [{"role": "assistant", "content": negative}]
                full = tokenizer.apply_chat_template(example["prompt"] + answer, tokenize=True, return_dict=True)
                full = full["input_ids"]
                if full[: len(prompt_ids)] != prompt_ids:  # TRL cut the prompt where prompt and answer diverge
                    raise LlmrecError(f"{dataset_name}: the chat template renders the prompt differently before "
                                      f"the negative {negative!r}; use a template whose prompt is a prefix")
                out.append(full[len(prompt_ids):])
            return {"rejected_list_ids": out}

        return dataset.map(tokenize_negatives, desc=f"Tokenizing the negatives of {dataset_name}")

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        self._signature_columns = [*self._signature_columns, "rejected_list_ids"]

    def _compute_loss(self, model: Any, inputs: dict[str, torch.Tensor], return_outputs: bool) -> Any:
        mode = "train" if self.model.training else "eval"
        group_size = int(inputs.pop("group_size"))  # 1 + K: what TRL's reference pass must not see
        completion_mask = inputs["completion_mask"]  # ((1+K)B, L)
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False,
                        labels=labels, fused_lm_head=True)
        logps = outputs.log_probs[:, -(completion_mask.size(1) - 1):].sum(dim=1)  # ((1+K)B,); unlabeled are 0
        ref_logps = torch.cat(self.compute_ref_log_probs(self.ref_model or self.model, inputs))  # same order
        ratios = (logps - ref_logps).view(group_size, -1)  # (1+K, B): row 0 the chosen items
        chosen, rejected = ratios[0], ratios[1:].T  # (B,), (B, K)
        loss = softmax_dpo_loss(chosen, rejected, self.beta).mean()

        # TRL's reward and log-prob metrics, "rejected" averaged over the K negatives; accuracy: the target
        # beats every negative. (TRL's entropy and logit metrics are not computed.)
        gather, metrics = self.accelerator.gather, self._metrics[mode]
        chosen_rewards, rejected_rewards = self.beta * chosen.detach(), self.beta * rejected.detach()
        metrics["rewards/chosen"].append(gather(chosen_rewards).mean().item())
        metrics["rewards/rejected"].append(gather(rejected_rewards.mean(dim=1)).mean().item())
        wins = (chosen_rewards > rejected_rewards.amax(dim=1)).float()
        metrics["rewards/accuracies"].append(gather(wins).mean().item())
        metrics["rewards/margins"].append(gather(chosen_rewards - rejected_rewards.mean(dim=1)).mean().item())
        metrics["logps/chosen"].append(gather(logps.view(group_size, -1)[0].detach()).mean().item())
        metrics["logps/rejected"].append(gather(logps.view(group_size, -1)[1:].detach()).mean().item())
        if mode == "train":
            self._total_train_tokens += int(gather(inputs["attention_mask"].sum()).sum().item())
        metrics["num_tokens"] = [self._total_train_tokens]
        return (loss, outputs) if return_outputs else loss
