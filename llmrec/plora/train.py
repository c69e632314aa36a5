"""`recipes/plora.py`: SFT of a personalized LoRA, the SFT recipe's data, model loading and TRL SFTTrainer.

The pieces of llmrec.training.sft (output check, index, model and tokenizer, prompt rows, resume) are reused
as they are; what changes: the LoRA is `personalize`d (llmrec.plora.model) instead of handed to the trainer as
a peft_config, every row gets a `user_input` column (the SASRec encoder's positions of the row's shown history,
or the user's row in the id table), and the trainer keeps that column and collates it beside TRL's batch.
Checkpoints and the final folder hold the gate (plora.safetensors, plora.json) beside PEFT's adapter, and a
resumed run reloads it; `llmrec eval rank --checkpoint` ranks with the folder (llmrec.plora.inference), and
the ranking callback hands each validation row its user input the same way. Items as new tokens (semantic
IDs) train their embedding rows as in SFT (`train_item_tokens`); PEFT saves the resized embedding beside the
adapter. Packing is refused: one user per row.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from datasets import Dataset
from transformers import set_seed
from trl import ModelConfig, SFTTrainer

from llmrec.artifacts import write_json
from llmrec.cli import parse_args
from llmrec.collab.checkpoint import load_collab
from llmrec.collab.sequences import CollabData
from llmrec.data.dataset import PreparedDataset
from llmrec.errors import LlmrecError
from llmrec.evaluation.sampling import sample_rows
from llmrec.hardware import use_every_core
from llmrec.plora.folder import read_gate, write_gate
from llmrec.plora.model import USER_INPUT, PLoRASettings, personalize
from llmrec.plora.users import IdUsers, SasrecUsers, UserSource, user_inputs
from llmrec.prompts.build import PromptBuildConfig, build_prompt_datasets
from llmrec.training.config import RecArguments, RecSFTConfig
from llmrec.training.callbacks import RankingEvalCallback
from llmrec.training.model import check_item_token_decay, load_for_training, train_item_tokens
from llmrec.training.sft import check_output_dir, load_index, resume_checkpoint


@dataclass
class PLoRAArguments:
    n_experts: int = field(default=4, metadata={"help": "K, the number of LoRA experts."})
    shape: Literal["ilora", "reclora"] = field(default="ilora", metadata={
        "help": "ilora: lora_r split into K experts of rank lora_r / K (Kong et al. 2024). reclora: K meta-LoRAs "
        "A_k of rank lora_r mixed per user, A_p = sum_k g_k A_k, one shared B (Zhu et al. 2024)."})
    temperature: float = field(default=1.0, metadata={"help": "Gate softmax temperature."})
    top_k: int | None = field(default=None, metadata={"help": "Keep the top-k experts per user (renormalised)."})
    router_hidden: int = field(default=0, metadata={"help": "0: linear router; > 0: MLP with this hidden size."})
    user_repr: Literal["sasrec", "id"] = field(default="sasrec", metadata={
        "help": "sasrec: the frozen SASRec state of each row's shown history (--encoder). id: a learned "
        "embedding per training user. Unknown users (no known item / not a training user) get the uniform gate."})
    encoder: str | None = field(default=None, metadata={
        "help": "user_repr sasrec: a SASRec folder from `llmrec train collab` on the same dataset."})
    user_dim: int = field(default=32, metadata={"help": "user_repr id: size of the learned user embedding."})

    def settings(self) -> PLoRASettings:
        return PLoRASettings(self.n_experts, self.shape, self.temperature, self.top_k, self.router_hidden)


def user_source(p: PLoRAArguments, dataset: PreparedDataset) -> UserSource:
    if p.user_repr == "id":
        return IdUsers(CollabData.from_dataset(dataset).users, p.user_dim)
    if not p.encoder:
        raise LlmrecError("--user_repr sasrec needs --encoder, a SASRec folder (llmrec train collab --model sasrec)")
    return SasrecUsers(load_collab(p.encoder, dataset), p.encoder)  # refuses an encoder of another catalog


def with_user_input(rows: Dataset, users: UserSource, dataset: PreparedDataset) -> Dataset:
    """Add `user_input` per row: history positions (-1 padded later) or the user's table row (-1: unknown)."""
    values = user_inputs(users, rows, dataset.items["item_id"].to_pylist()).tolist()
    if not isinstance(users, IdUsers):  # the collator pads each batch again
        values = [[c for c in row if c >= 0] for row in values]
    return rows.add_column(USER_INPUT, values)


class UserCollator:
    """TRL's collator for the text, plus `user_input` as a tensor ((B,) rows, or (B, L) padded with -1)."""

    def __init__(self, inner: Any):
        self.inner = inner

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        users = [e.pop(USER_INPUT) for e in examples]
        batch = self.inner(examples)
        if users and isinstance(users[0], list):
            padded = torch.full((len(users), max([1, *map(len, users)])), -1, dtype=torch.long)
            for r, row in enumerate(users):
                padded[r, : len(row)] = torch.tensor(row, dtype=torch.long)
            batch[USER_INPUT] = padded
        else:
            batch[USER_INPUT] = torch.tensor(users, dtype=torch.long)
        return batch


class PLoRATrainer(SFTTrainer):
    """SFTTrainer that keeps the `user_input` column and saves / resumes the gate with the adapter."""

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if USER_INPUT not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, USER_INPUT]

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        super()._save(output_dir, state_dict)
        write_gate(self.accelerator.unwrap_model(self.model).personalizer, output_dir or self.args.output_dir)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        read_gate(self.accelerator.unwrap_model(model or self.model).personalizer, resume_from_checkpoint)


def train_plora(prompts: PromptBuildConfig, rec: RecArguments, args: RecSFTConfig, margs: ModelConfig,
                p: PLoRAArguments) -> dict[str, Any]:
    check_output_dir(args.output_dir)
    p.settings().check("plora options")
    if not margs.use_peft:
        raise LlmrecError("personalized LoRA trains LoRA experts: set use_peft: true")
    if args.packing or args.padding_free:
        raise LlmrecError("personalized LoRA needs one user per row: set packing: false and padding_free: false")
    check_item_token_decay(rec, args.weight_decay, use_peft=True)
    dataset = PreparedDataset.load(prompts.data)
    index = load_index(prompts, dataset)
    threads = use_every_core()
    set_seed(args.seed)
    model, tokenizer, lora_config = load_for_training(margs, rec, index)
    users = user_source(p, dataset)
    splits = build_prompt_datasets(prompts, dataset, index, tokenizer if prompts.max_prompt_tokens else None)
    train = with_user_input(splits["train"], users, dataset)
    model = personalize(model, lora_config, p.settings(), users)
    train_item_tokens(model, tokenizer, index, rec)  # after PEFT froze the base: the rows train beside the experts
    trainer = PLoRATrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)
    trainer.data_collator = UserCollator(trainer.data_collator)
    item_ids = dataset.items["item_id"].to_pylist()
    ranking = RankingEvalCallback(trainer, index, dataset, sample_rows(splits["valid"], rec.ranking_eval_users,
                                  args.seed), rec.ranking_eval_steps, rec.ranking_k, rec.ranking_batch_size,
                                  rec.ranking_eval_at_start,
                                  inputs_for=lambda rows: {USER_INPUT: user_inputs(users, rows, item_ids)})
    trainer.add_callback(ranking)
    start, checkpoint = time.perf_counter(), resume_checkpoint(args)
    trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.perf_counter() - start
    trainer.save_model(args.output_dir)
    log = trainer.state.log_history
    known = sum(1 for u in train[USER_INPUT] if (u >= 0 if isinstance(u, int) else len(u) > 0))
    result: dict[str, Any] = {
        "train_seconds": round(seconds, 1), "train_rows": len(train), "cold_start_rows": len(train) - known,
        "resumed_from": checkpoint, "threads": threads, "bf16": bool(args.bf16),
        "train_tokens": max((e.get("num_tokens", 0) for e in log), default=0),
        "loss_history": [(e["step"], e["loss"]) for e in log if "loss" in e],
        **ranking.summary(final=rec.final_eval),
    }
    if trainer.is_world_process_zero():
        out = Path(args.output_dir)
        index.save(out / "item_index", overwrite=True)
        write_json(out / "llmrec.json", {"prompts": dataclasses.asdict(prompts), "rec": dataclasses.asdict(rec),
                                         "plora": dataclasses.asdict(p), "base_model": margs.model_name_or_path,
                                         "result": result})
    return result


ARG_TYPES = (PromptBuildConfig, RecArguments, RecSFTConfig, ModelConfig, PLoRAArguments)


def main(argv: list[str] | None = None) -> None:
    prompts, rec, args, margs, p = parse_args(ARG_TYPES, argv, prog="recipes/plora.py")
    result = train_plora(prompts, rec, args, margs, p)
    losses = result["loss_history"]
    if losses:
        print(f"loss {losses[0][1]:.3f} (step {losses[0][0]}) -> {losses[-1][1]:.3f} (step {losses[-1][0]}) "
              f"in {result['train_seconds']} s; {result['cold_start_rows']} of {result['train_rows']} rows cold-start")
    print(f"saved {args.output_dir}")
