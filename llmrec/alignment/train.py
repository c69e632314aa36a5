"""`recipes/dpo.py` / `llmrec train dpo`: preference alignment of an SFT recommender, in rounds.

Each round: sample training prompts (the SFT run's own prompt settings), pick rejected items with the
configured strategy (`negatives.py`, using the model as it is now for self-play), drop and count rows that
cannot be preference rows, save the round's data (`rounds/round-R/preference.jsonl`), train `max_steps`
with TRL's `DPOTrainer` (loss dpo) or `SoftmaxDPOTrainer` (loss sdpo), and rank validation users. The
policy is the SFT LoRA adapter; the reference is TRL's frozen "ref" copy of that adapter at the start of
the round (round 1: the SFT model; round r: round r-1's policy, as SPRec's self-play): no second model in
memory. A finished round is skipped on a rerun, an interrupted one resumes from its last checkpoint.
The output folder is an SFT-shaped checkpoint (adapter, tokenizer, item_index/, llmrec.json, model card)
that `llmrec eval rank --checkpoint` scores like any other.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
from accelerate import PartialState
from transformers import set_seed
from trl import DPOTrainer

from llmrec.alignment.config import AlignmentArguments, RecDPOConfig
from llmrec.alignment.negatives import NegativeSource, pick_negatives
from llmrec.alignment.card import write_alignment_card
from llmrec.alignment.policy import load_policy
from llmrec.alignment.preferences import preference_rows
from llmrec.alignment.softmax_dpo import SoftmaxDPOTrainer, check_softmax_dpo_args
from llmrec.artifacts import read_json, write_json, write_jsonl
from llmrec.collab.sequences import CollabData
from llmrec.data.dataset import PreparedDataset
from llmrec.errors import LlmrecError, check_at_least
from llmrec.hardware import use_every_core
from llmrec.training.callbacks import RankingEvalCallback, rank_on_every_process
from llmrec.training.sft import check_output_dir, resume_checkpoint


def make_trainer(loss: str, model: Any, args: RecDPOConfig, rows: Any, tokenizer: Any) -> Any:
    cls = SoftmaxDPOTrainer if loss == "sdpo" else DPOTrainer
    return cls(model=model, args=args, train_dataset=rows, processing_class=tokenizer)


def negative_source(config: AlignmentArguments, dataset: PreparedDataset, policy: Any) -> NegativeSource:
    """The strategies' inputs: training items, a classic model if named, and the policy's beam search."""
    scorer = None
    if config.negatives_model:
        from llmrec.collab.checkpoint import load_collab

        scorer = load_collab(config.negatives_model, dataset)  # refuses a model of another catalog

    def generate(rows: Any, k: int) -> list[list[str]]:
        records = rank_on_every_process(policy.model, policy.tokenizer, policy.trie, rows, k,
                                        config.generation_batch_size, PartialState().device, progress=True)
        return [r["ranked_items"] for r in records]

    return NegativeSource(CollabData.from_dataset(dataset), scorer=scorer, generate=generate)


def train_round(r: int, config: AlignmentArguments, args: RecDPOConfig, policy: Any, dataset: PreparedDataset,
                source: NegativeSource, eval_rows: Any) -> dict[str, Any]:
    folder = Path(args.output_dir) / "rounds" / f"round-{r}"
    state = PartialState()
    rows = policy.train_rows(config.max_train_rows, seed=args.seed + r)  # a new sample each round
    rng = np.random.default_rng(args.seed + r)
    negatives, counts = pick_negatives(config.negatives, rows, config.n_negatives, source, rng, config.pool_size)
    pairs, skipped = preference_rows(rows, negatives, policy.index)
    if len(pairs) == 0:
        raise LlmrecError(f"round {r}: no preference rows left ({skipped})")
    if state.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        write_jsonl(folder / "preference.jsonl", pairs.to_list())
    round_args = copy.deepcopy(args)
    round_args.output_dir, round_args.seed = str(folder / "trainer"), args.seed + r
    trainer = make_trainer(config.loss, policy.model, round_args, pairs, policy.tokenizer)
    ranking = RankingEvalCallback(trainer, policy.index, dataset, eval_rows, 0, config.ranking_k,
                                  config.generation_batch_size, at_start=r == 1, trie=policy.trie)
    trainer.add_callback(ranking)
    resume = resume_checkpoint(round_args)
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - start
    policy.drop_reference()  # the next round's reference is a new copy of this policy
    trainer.accelerator.free_memory()  # the next round wraps the same model anew (DDP hooks, optimizer)
    valid = ranking.evaluate().metrics
    log = trainer.state.log_history
    result = {
        "round": r, "settings": round_settings(config, args), "train_rows": len(pairs), "negatives": counts,
        "skipped": skipped, "train_seconds": round(seconds, 1), "resumed_from": resume,
        "train_tokens": max((e.get("num_tokens", 0) for e in log), default=0),
        "log": [{k: v for k, v in e.items() if k.startswith(("loss", "rewards/", "step"))} for e in log if "loss" in e],
        "valid_before": ranking.history[0] if ranking.history else None,
        "valid_after": {k: v["value"] for k, v in valid.items() if "@" in k and isinstance(v, dict)},
    }
    if state.is_main_process:
        policy.model.save_pretrained(folder / "adapter")
        write_json(folder / "result.json", result)
    state.wait_for_everyone()
    return result


def round_settings(config: AlignmentArguments, args: RecDPOConfig) -> dict[str, Any]:
    """What a round's result depends on: a finished round is reused only under the same settings."""
    ours = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("rounds", "ranking_eval_users")}
    theirs = {k: getattr(args, k) for k in ("beta", "learning_rate", "max_steps", "per_device_train_batch_size",
                                            "gradient_accumulation_steps", "seed", "loss_type")}
    return {**ours, **theirs}


def finished_round(folder: Path, config: AlignmentArguments, args: RecDPOConfig) -> dict[str, Any] | None:
    if not (folder / "result.json").exists():
        return None
    result = read_json(folder / "result.json")
    if result.get("settings") != round_settings(config, args):
        raise LlmrecError(f"{folder} was trained with other settings; use another --output_dir (or remove it)")
    return result


def train_dpo(config: AlignmentArguments, args: RecDPOConfig) -> dict[str, Any]:
    check_output_dir(args.output_dir)
    if config.loss == "sdpo":
        check_softmax_dpo_args(args)
    check_at_least(config, {"n_negatives": 1, "pool_size": 1, "rounds": 1, "max_train_rows": 1,
                            "generation_batch_size": 1, "ranking_eval_users": 1, "ranking_k": 1})
    main_process = PartialState().is_main_process
    if config.loss == "dpo" and config.n_negatives > 1 and main_process:
        print(f"loss dpo trains on the first of {config.n_negatives} negatives per row (sdpo uses them all)")
    threads = use_every_core()
    set_seed(args.seed)
    policy = load_policy(config.sft_checkpoint, config.data)
    dataset = policy.dataset
    source = negative_source(config, dataset, policy)
    eval_rows = policy.eval_rows(config.ranking_eval_users, args.seed)
    results = []
    for r in range(1, config.rounds + 1):
        folder = Path(args.output_dir) / "rounds" / f"round-{r}"
        done = finished_round(folder, config, args)
        if done:  # finished in an earlier run: take its weights, skip its work
            policy.load_adapter_weights(folder / "adapter")
            results.append(done)
            continue
        results.append(train_round(r, config, args, policy, dataset, source, eval_rows))
        last, k = results[-1], config.ranking_k
        if last["log"] and PartialState().is_main_process:
            print(f"round {r}: {last['train_rows']} rows, loss {last['log'][0]['loss']:.4f} -> "
                  f"{last['log'][-1]['loss']:.4f} in {last['train_seconds']} s; valid ndcg@{k} "
                  f"{last['valid_after'][f'ndcg@{k}']:.4f}")
    result = {"rounds": results, "threads": threads, "bf16": bool(args.bf16),
              "train_seconds": round(sum(r["train_seconds"] for r in results), 1)}
    if main_process:
        out = Path(args.output_dir)
        policy.save(out, alignment=dataclasses.asdict(config), result=result, sft_checkpoint=config.sft_checkpoint)
        write_alignment_card(out, config, args, policy, result)
    return result


def main(argv: list[str] | None = None) -> None:
    from llmrec.cli import parse_args

    config, args = parse_args((AlignmentArguments, RecDPOConfig), argv, prog="recipes/dpo.py")
    result = train_dpo(config, args)
    if not PartialState().is_main_process:
        return
    last = result["rounds"][-1]
    for name, value in last["valid_after"].items():
        if name.startswith(("ndcg", "recall")):
            print(f"valid {name} {value:.4f}")
    print(f"saved {args.output_dir}")
