"""`recipes/rerank.py` / `llmrec train rerank`: fine-tune an LLM re-ranker over a retriever's candidates.

A transformers `Trainer` subclass with its own collator and `compute_loss` (cross-entropy over the N
letter logits at the last prompt position, the target's letter as label), LoRA through PEFT, then:
lambda chosen on validation, and the retriever / random / LLM / fused orders of the same test candidates
scored with paired tests. The folder is a PEFT adapter + tokenizer, `llmrec.json` and a model card.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments, set_seed
from trl import ModelConfig, get_peft_config

from llmrec.artifacts import read_json, write_json
from llmrec.collab.sequences import CollabData
from llmrec.data.dataset import PreparedDataset
from llmrec.evaluation.sampling import sample_positions
from llmrec.errors import LlmrecError, check_at_least
from llmrec.hardware import HardwareDefaults, pick_device
from llmrec.hub.load import load_for_inference, merged
from llmrec.hub.resolve import resolve_model
from llmrec.indexing.p5 import title_strings
from llmrec.rerank.evaluate import (
    candidate_orders,
    compare_orders,
    llm_scores,
    pick_lambda,
    summary,
    encode_rows,
)
from llmrec.rerank.rows import eval_rows, train_rows
from llmrec.rerank.verbalizer import SCORINGS, Verbalizer, shorten_title
from llmrec.training.sft import check_output_dir, resume_checkpoint


@dataclass
class RerankArguments:
    data: str = field(metadata={"help": "Prepared dataset folder."})
    retriever: str = field(metadata={"help": "Classic model folder with candidates-{train,valid,test}.jsonl "
                                     "(llmrec train collab --candidates N)."})
    n_candidates: int = field(default=20, metadata={"help": "Candidates per prompt (the retriever's top N)."})
    max_history: int = field(default=10, metadata={"help": "Most recent history titles shown."})
    max_title_chars: int = field(default=40, metadata={"help": "Longer titles are cut, keeping the year (short "
                                                       "prompts: CPU time)."})
    show_ranks: bool = field(default=False, metadata={"help": "Show the retriever's rank beside each candidate "
                                                      "(RecRanker's hint)."})
    distill_weight: float = field(default=0.0, metadata={"help": "Weight of a distillation term: KL from the "
                                                         "retriever's softmax over the candidates (scores "
                                                         "standardised per prompt) to the LLM's. A dense signal "
                                                         "beside the one noisy target; 0 trains on the target alone."})
    scoring: str = field(default="letter", metadata={"help": "How a candidate is scored in the one forward pass: "
                                                     "'letter' (its letter's logit at the answer position, "
                                                     "LlamaRec) or 'inline' (a ' Yes' logit read at the end of "
                                                     "its own line).", "choices": list(SCORINGS)})
    max_train_rows: int = field(default=2000, metadata={"help": "Training prompts, spread evenly over users."})
    system_prompt: str | None = field(default="You recommend movies.", metadata={"help": "System message."})
    lambdas: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0],
                                 metadata={"help": "Fusion weights tried on validation."})
    max_eval_users: int | None = field(default=None, metadata={"help": "Score a seeded sample of this many valid "
                                                                "and test users (default: all); the orders are "
                                                                "compared on the same users."})
    score_orders: int = field(default=2, metadata={"help": "Prompt orderings scored and averaged (the retriever's, "
                                                   "then reversed): position bias; 1 halves scoring time."})
    score_untrained: bool = field(default=False, metadata={"help": "Also score the base model before training on "
                                                           "the test users: the untrained reference line."})
    score_batch_size: int = field(default=16, metadata={"help": "Prompts per scoring forward pass."})
    eval_only: bool = field(default=False, metadata={"help": "Skip training: score the adapter already saved in "
                                                     "output_dir (fusion and the test comparison)."})
    zero_shot: bool = field(default=False, metadata={"help": "Skip training: score the base model itself (the "
                                                     "zero-shot re-ranker's row; fusion and the test comparison "
                                                     "as for a trained one)."})


@dataclass
class RerankConfig(HardwareDefaults, TrainingArguments):
    """transformers' TrainingArguments; the collator needs the raw columns, so none are dropped, and bf16
    autocast is on by default where the hardware computes bf16 (CUDA, or a CPU with AVX512-BF16/AMX)."""

    remove_unused_columns: bool = False
    bf16: bool | None = field(default=None, metadata={"help": "bf16 autocast (default: where the hardware has it)."})


class RerankTrainer(Trainer):
    """Loss: cross-entropy of the target among the N candidates' logits (the verbalizer's, from one forward
    pass), plus `distill_weight` * KL(softmax(z(retriever scores)) || softmax(LLM logits)), z standardising
    each prompt's scores (distillation from the retriever: every candidate's relative score is supervised,
    not only the target's, so the model first learns what the retriever knows). The verbalizer is also the
    collator."""

    def __init__(self, *args: Any, verbalizer: Verbalizer, distill_weight: float = 0.0, **kwargs: Any):
        super().__init__(*args, data_collator=verbalizer.collate, **kwargs)
        self.verbalizer, self.distill_weight = verbalizer, distill_weight

    def compute_loss(self, model: Any, inputs: dict[str, torch.Tensor], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        logits = self.verbalizer.logits(model, inputs)  # (B, N)
        loss = F.cross_entropy(logits, inputs["labels"])
        if self.distill_weight:
            teacher = inputs["teacher"]  # (B, N)
            z = (teacher - teacher.mean(-1, keepdim=True)) / teacher.std(-1, correction=0, keepdim=True).clamp_min(1e-6)
            loss = loss + self.distill_weight * F.kl_div(logits.log_softmax(-1), z.log_softmax(-1),
                                                         log_target=True, reduction="batchmean")
        return (loss, logits) if return_outputs else loss


def train_rerank(r: RerankArguments, args: RerankConfig, margs: ModelConfig) -> dict[str, Any]:
    """Train (unless --eval_only or --zero_shot), save, then score valid/test, choose lambda and compare the
    orders."""
    import datasets
    from peft import get_peft_model

    check_output_dir(args.output_dir)
    if r.zero_shot and (r.eval_only or r.score_untrained):
        raise LlmrecError("--zero_shot scores the base model already: drop --eval_only and --score_untrained")
    out = Path(args.output_dir)
    dataset = PreparedDataset.load(r.data)
    titles = [shorten_title(t, r.max_title_chars) for t in title_strings(dataset.items)[0]]
    data = CollabData.from_dataset(dataset)
    rows, counts = train_rows(dataset, data, r.retriever, r.n_candidates, r.max_history, r.max_train_rows,
                              args.seed)
    valid, test = ([rows_[i] for i in sample_positions(len(rows_), r.max_eval_users, args.seed)] for rows_ in
                   (eval_rows(dataset, data, r.retriever, s, r.n_candidates, r.max_history) for s in ("valid", "test")))
    path = resolve_model(margs.model_name_or_path or "smollm2-135m")
    tokenizer = AutoTokenizer.from_pretrained(path)
    verbalizer = Verbalizer(tokenizer, r.n_candidates, r.scoring)
    encoded = encode_rows(verbalizer, rows, titles, r.show_ranks, r.system_prompt)
    result: dict[str, Any] = {"train_rows": counts,
                              "prompt_tokens_mean": round(sum(len(e["input_ids"]) for e in encoded) / len(encoded), 1)}
    if r.eval_only:
        if not (out / "adapter_config.json").exists() and not (out / "config.json").exists():
            raise LlmrecError(f"{out}: no trained re-ranker to score (--eval_only)")
        result.update(previous_training(out))
        scorer = load_for_inference(out, merge=True)
    elif r.zero_shot:
        out.mkdir(parents=True, exist_ok=True)
        result["train_seconds"] = 0.0
        scorer = load_for_inference(path)
    else:
        set_seed(args.seed)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        if margs.use_peft:
            model = get_peft_model(model, get_peft_config(margs))
        train = datasets.Dataset.from_list([{**e, "label": row.label, "teacher": row.retriever_scores}
                                            for e, row in zip(encoded, rows)])
        trainer = RerankTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer,
                                verbalizer=verbalizer, distill_weight=r.distill_weight)
        start = time.perf_counter()
        trainer.train(resume_from_checkpoint=resume_checkpoint(args))
        result["train_seconds"] = round(time.perf_counter() - start, 1)
        trainer.save_model(args.output_dir)
        result["loss_history"] = [(e["step"], e["loss"]) for e in trainer.state.log_history if "loss" in e]
        if not trainer.is_world_process_zero():
            return result
        write_json(out / "llmrec.json", {"rerank": dataclasses.asdict(r), "base_model": margs.model_name_or_path,
                                         "result": result})  # scoring may be interrupted: --eval_only resumes
        scorer = merged(trainer.accelerator.unwrap_model(trainer.model)).eval()
    start = time.perf_counter()
    # Scoring runs under the same bf16 autocast as training (2.8x the fp32 speed on an AVX512-BF16 CPU).
    with torch.autocast(pick_device().type, dtype=torch.bfloat16, enabled=bool(args.bf16)):
        valid_llm, test_llm = (llm_scores(scorer, verbalizer, rows_, titles, r.show_ranks, r.system_prompt,
                                          r.score_batch_size, r.score_orders) for rows_ in (valid, test))
        untrained = None
        if r.score_untrained:
            base = load_for_inference(path)
            untrained = llm_scores(base, verbalizer, test, titles, r.show_ranks, r.system_prompt, r.score_batch_size,
                                   r.score_orders)
    lam, by_lambda = pick_lambda(valid, valid_llm, r.lambdas)
    result["score_seconds"] = round(time.perf_counter() - start, 1)
    orders = candidate_orders(test, test_llm, lam, args.seed, untrained)
    result.update(fusion_lambda=lam, valid_ndcg_by_lambda=by_lambda,
                  test=summary(compare_orders(dataset, test, orders, "test", save_to=out,
                                               sampled=r.max_eval_users is not None)),
                  test_users=len(test), test_targets_in_candidates=sum(row.label >= 0 for row in test) / len(test))
    write_json(out / "llmrec.json", {"rerank": dataclasses.asdict(r), "base_model": margs.model_name_or_path,
                                     "result": result})
    write_model_card(out, r, args, margs, result)
    return result


def previous_training(out: Path) -> dict[str, Any]:
    """Training figures of an earlier run in `out`: from its llmrec.json, else its newest checkpoint's state."""
    from transformers.trainer_utils import get_last_checkpoint

    if (out / "llmrec.json").exists():
        done = read_json(out / "llmrec.json")["result"]
        return {k: done[k] for k in ("train_seconds", "loss_history") if k in done}
    last = get_last_checkpoint(str(out))
    if last is None:
        return {}
    log = read_json(Path(last) / "trainer_state.json")["log_history"]
    return {"loss_history": [(e["step"], e["loss"]) for e in log if "loss" in e]}


def write_model_card(out: Path, r: RerankArguments, args: RerankConfig, margs: ModelConfig,
                     result: dict[str, Any]) -> None:
    losses = result.get("loss_history")
    lines = ["---", "library_name: peft" if margs.use_peft else "library_name: transformers",
             "tags: [llmrec, recommendation, reranking]", f"base_model: {margs.model_name_or_path}", "---",
             "# LLM re-ranker " + ("scored zero-shot" if r.zero_shot else "trained") + " with llmrec", "",
             f"- **Retriever:** `{r.retriever}`, top {r.n_candidates} candidates; ranks shown: {r.show_ranks}; "
             f"scoring: {r.scoring}; distillation weight {r.distill_weight:g}",
             f"- **Data:** `{r.data}`; {result['train_rows']['rows']} training prompts from training prefixes "
             f"(~{result['prompt_tokens_mean']:.0f} tokens each), history <= {r.max_history} titles",
             ("- **Training:** none (--zero_shot: the base model scores the candidates)" if r.zero_shot else
              f"- **Training:** lr {args.learning_rate}, batch {args.per_device_train_batch_size}, bf16 {args.bf16}, "
              f"{result.get('train_seconds', '?')} s; loss "
              + (f"{losses[0][1]:.3f} -> {losses[-1][1]:.3f}" if losses else "-")),
             f"- **Fusion:** lambda {result['fusion_lambda']:g} chosen on validation NDCG@10", "",
             "## Test (the same candidates in four orders; paired tests on NDCG@10)", "", "```",
             format_summary(result["test"]), "```", ""]
    (out / "README.md").write_text("\n".join(lines), encoding="utf-8")


def format_summary(lines: list[dict[str, Any]]) -> str:
    """The summary as a table: NDCG@10 with its CI, Recall@10, and the paired p-values against the references."""
    refs = [("p vs retriever", "p_vs_retriever"), ("p vs random", "p_vs_random_order"),
            ("p vs most-pop", "p_vs_most_popular")]
    rows = [f"{'order of the same candidates':<28}{'ndcg@10':>26}{'recall@10':>10}"
            + "".join(f"{title:>16}" for title, _ in refs)]
    for line in lines:
        m = line["ndcg@10"]
        rows.append(f"{line['name']:<28}{m['value']:>8.4f} [{m['ci95'][0]:.4f}, {m['ci95'][1]:.4f}]"
                    f"{line['recall@10']['value']:>10.4f}"
                    + "".join(f"{'-' if line.get(key) is None else f'{line[key]:.4f}':>16}" for _, key in refs))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    from llmrec.cli import parse_args

    r, args, margs = parse_args((RerankArguments, RerankConfig, ModelConfig), argv, prog="recipes/rerank.py")
    check_at_least(r, {"n_candidates": 2, "max_eval_users": 1, "score_orders": 1, "score_batch_size": 1,
                       "distill_weight": 0})
    if r.score_orders > 2:
        raise LlmrecError("--score_orders is 1 (the retriever's order) or 2 (and its reverse)")
    result = train_rerank(r, args, margs)
    losses = result.get("loss_history")
    if losses:
        print(f"loss {losses[0][1]:.3f} (step {losses[0][0]}) -> {losses[-1][1]:.3f} (step {losses[-1][0]}); "
              f"chance is ln {r.n_candidates} = {torch.tensor(r.n_candidates).log():.3f}")
    if "test" in result:
        print(f"test: {result['test_users']} users; target among the {r.n_candidates} candidates for "
              f"{result['test_targets_in_candidates']:.2%} of them; lambda {result['fusion_lambda']:g} chosen on "
              f"validation; scoring {result['score_seconds']} s")
        print(format_summary(result["test"]))
    print(f"saved {args.output_dir}")
