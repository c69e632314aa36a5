"""Supervised fine-tuning of an LLM recommender on rendered prompts, with TRL's SFTTrainer.

`train_sft` checks everything that can fail before training starts (output folder writable, index
fits the dataset and tokenizer, training rows exist), resumes from the newest checkpoint in output_dir
unless told otherwise, and leaves a standard Hugging Face / PEFT folder with the item index copied
beside it (`item_index/`), the prompt settings (`llmrec.json`) and a model card.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from transformers import set_seed
from transformers.trainer_utils import get_last_checkpoint
from trl import ModelConfig, SFTTrainer

from llmrec.artifacts import write_json
from llmrec.data.dataset import PreparedDataset
from llmrec.errors import LlmrecError
from llmrec.evaluation.sampling import sample_rows
from llmrec.hardware import use_every_core
from llmrec.indexing.build import IndexBuildConfig, build_index
from llmrec.indexing.item_index import ItemIndex
from llmrec.prompts.build import PromptBuildConfig, build_prompt_datasets
from llmrec.training.callbacks import RankingEvalCallback
from llmrec.training.card import write_model_card
from llmrec.training.config import RecArguments, RecSFTConfig
from llmrec.training.model import check_item_token_decay, load_for_training, train_item_tokens
from llmrec.training.scratch import check_in_vocabulary


def check_output_dir(path: str) -> None:
    """Fail before anything loads if output_dir cannot be written. Creates nothing (the trainer makes the
    folder), so a run that then fails on its inputs leaves no empty output_dir behind."""
    folder = Path(path).absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    try:
        with tempfile.TemporaryFile(dir=existing):  # a probe file where the folder is or will be made
            pass
    except OSError as e:
        raise LlmrecError(f"{path}: output_dir is not writable ({e.strerror})") from None


def load_index(prompts: PromptBuildConfig, dataset: PreparedDataset) -> ItemIndex:
    """The index named in the config, or titles with year (the BIGRec / TALLRec way of naming items)."""
    if prompts.index:
        index = ItemIndex.load(prompts.index)
        index.check_dataset(dataset.items, prompts.index)
        return index
    return build_index(IndexBuildConfig(data=prompts.data, output="", method="title"), dataset)


def resume_checkpoint(args: RecSFTConfig) -> str | None:
    """An explicit resume_from_checkpoint wins; otherwise the newest checkpoint-N in output_dir, if any."""
    if args.resume_from_checkpoint:
        return args.resume_from_checkpoint
    return get_last_checkpoint(args.output_dir) if os.path.isdir(args.output_dir) else None


def train_sft(prompts: PromptBuildConfig, rec: RecArguments, args: RecSFTConfig, margs: ModelConfig) -> dict[str, Any]:
    check_output_dir(args.output_dir)
    check_item_token_decay(rec, args.weight_decay, margs.use_peft)
    dataset = PreparedDataset.load(prompts.data)
    index = load_index(prompts, dataset)
    threads = use_every_core()
    set_seed(args.seed)  # new embedding rows and LoRA weights start the same in every run and on every rank
    model, tokenizer, peft_config = load_for_training(margs, rec, index)
    splits = build_prompt_datasets(prompts, dataset, index, tokenizer if prompts.max_prompt_tokens else None)
    if rec.model_init == "scratch":
        sample = splits["train"].select(range(min(256, len(splits["train"]))))
        check_in_vocabulary(tokenizer, [r["prompt"] if "prompt" in r else r["messages"][:-1] for r in sample],
                            ", ".join(prompts.families))
    eval_rows = sample_rows(splits["valid"], rec.ranking_eval_users, args.seed)
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=splits["train"], processing_class=tokenizer, peft_config=peft_config
    )
    if peft_config is not None:
        train_item_tokens(trainer.model, tokenizer, index, rec)
    # Building its trie also checks, before any training, that the tokenizer holds the index's tokens.
    ranking = RankingEvalCallback(
        trainer,
        index,
        dataset,
        eval_rows,
        rec.ranking_eval_steps,
        rec.ranking_k,
        rec.ranking_batch_size,
        rec.ranking_eval_at_start,
    )
    trainer.add_callback(ranking)
    start, checkpoint = time.perf_counter(), resume_checkpoint(args)
    trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.perf_counter() - start
    trainer.save_model(args.output_dir)
    log = trainer.state.log_history
    result: dict[str, Any] = {
        "train_seconds": round(seconds, 1),
        "train_rows": len(splits["train"]),
        "resumed_from": checkpoint,
        "train_tokens": max((e.get("num_tokens", 0) for e in log), default=0),
        "threads": threads,
        "bf16": bool(args.bf16),
        "loss_history": [(e["step"], e["loss"]) for e in log if "loss" in e],
    }
    # on every rank: a sharded model (FSDP, ZeRO-3) needs them all for each forward pass
    result.update(ranking.summary(final=rec.final_eval))
    if trainer.is_world_process_zero():
        out = Path(args.output_dir)
        index.save(out / "item_index", overwrite=True)
        write_json(
            out / "llmrec.json",
            {
                "prompts": dataclasses.asdict(prompts),
                "rec": dataclasses.asdict(rec),
                "base_model": margs.model_name_or_path,
                "result": result,
            },
        )
        write_model_card(out, prompts, rec, args, margs, dataset, index, result)
        if args.push_to_hub:
            trainer.push_to_hub()
    return result


def main(argv: list[str] | None = None) -> None:
    from llmrec.cli import parse_args

    types = (PromptBuildConfig, RecArguments, RecSFTConfig, ModelConfig)
    prompts, rec, args, margs = parse_args(types, argv, prog="recipes/sft.py")
    result = train_sft(prompts, rec, args, margs)
    losses = result["loss_history"]
    if losses:
        print(
            f"loss {losses[0][1]:.3f} (step {losses[0][0]}) -> {losses[-1][1]:.3f} (step {losses[-1][0]}) "
            f"in {result['train_seconds']} s"
        )
    for name, value in result.get("valid_metrics", {}).items():
        if name.startswith(("ndcg", "recall")):
            print(f"valid {name} {value['value']:.4f} [{value['ci95'][0]:.4f}, {value['ci95'][1]:.4f}]")
    print(f"saved {args.output_dir}")
