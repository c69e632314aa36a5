"""`llmrec eval zeroshot`: how good is an LLM as a recommender out of the box?

Ask it (any OpenAI-compatible endpoint, or a local model with transformers or vLLM) for each sampled
user's top-k titles, parse and ground the answers to catalog items, and score them exactly as
`llmrec eval rank` scores any rankings: same metrics, CIs, report folder. Answers that name nothing in
the catalog stay in the lists as misses and count as hallucinations; empty or refused answers are
counted. Every answer is cached on disk as it arrives: a crashed run resumes, a re-run asks nothing.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from llmrec.artifacts import atomic_dir, cache_dir, provenance, write_json, write_jsonl
from llmrec.data.dataset import PreparedDataset
from llmrec.errors import LlmrecError, check_at_least
from llmrec.evaluation.metrics import rating_errors
from llmrec.evaluation.rank import RankEvalConfig, evaluate, protocol_line, save_report
from llmrec.evaluation.stats import bootstrap_ci
from llmrec.generation.backends import ChatBackend, Completion, GenerationSettings, UserContext
from llmrec.generation.cache import ResponseCache, answer_all
from llmrec.grounding import Grounded, TitleGrounder, parse_list
from llmrec.prompts.templates import load_family
from llmrec.zeroshot.scenarios import (
    DEFAULT_FAMILY,
    Request,
    build_requests,
    candidate_lists,
    pick_template,
    sample_users,
)

_NUMBER = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)")


@dataclass
class ZeroShotConfig:
    data: str = field(metadata={"help": "Prepared dataset folder (from `llmrec data prepare`)."})
    output: str = field(metadata={"help": "Report folder to write (as `llmrec eval rank`, plus samples.jsonl)."})
    backend: Literal["openai", "hf", "vllm"] = field(
        default="openai", metadata={"help": "openai: any OpenAI-compatible HTTP endpoint; hf/vllm: a local model."}
    )
    base_url: str | None = field(default=None, metadata={"help": "openai backend: e.g. http://127.0.0.1:8000/v1"})
    model: str = field(default="smollm2-135m", metadata={"help": "Model name at the endpoint, or a local model."})
    api_key_env: str = field(
        default="OPENAI_API_KEY", metadata={"help": "Environment variable holding the API key (never logged)."}
    )
    scenario: Literal["history", "cold_start", "rerank", "rating"] = field(
        default="history", metadata={"help": "history | cold_start (last few items) | rerank candidates | rating."}
    )
    family: str | None = field(default=None, metadata={"help": "Prompt family; default per scenario."})
    template: str | None = field(default=None, metadata={"help": "Template id; default the family's first."})
    system_prompt: str | None = field(default=None, metadata={"help": "A system message before every prompt."})
    split: Literal["valid", "test"] = field(default="test", metadata={"help": "Held-out split to score against."})
    n_users: int | None = field(default=100, metadata={"help": "Seeded sample of users; pass 0 for all."})
    max_history: int = field(default=20, metadata={"help": "Most recent rated items shown per user."})
    cold_start_history: int = field(default=3, metadata={"help": "cold_start: items shown per user."})
    k: int = field(default=50, metadata={"help": "How many recommendations to ask for."})
    n_candidates: int = field(default=20, metadata={"help": "rerank: candidates per user."})
    candidates_from: str = field(
        default="most_popular", metadata={"help": "rerank: most_popular, random, or a rankings.jsonl path."}
    )
    max_tokens: int = field(default=1024, metadata={"help": "Answer length limit in tokens."})
    temperature: float = field(default=0.0, metadata={"help": "0 is greedy (reproducible and cacheable)."})
    concurrency: int = field(default=4, metadata={"help": "openai: requests in flight."})
    timeout: float = field(default=120.0, metadata={"help": "openai: per-request timeout, seconds."})
    max_retries: int = field(default=3, metadata={"help": "openai: retries with backoff (429, 5xx, timeouts)."})
    batch_size: int = field(default=8, metadata={"help": "hf: conversations per generate call."})
    cache: str | None = field(default=None, metadata={"help": "Response cache folder; default llmrec's cache."})
    fuzzy_cutoff: float = field(default=85.0, metadata={"help": "Grounding: rapidfuzz ratio to accept; 0 disables."})
    encoder: str | None = field(
        default=None, metadata={"help": "Grounding: a sentence-transformers model for the nearest-neighbour step."}
    )
    gamma: float = field(default=0.0, metadata={"help": "Grounding: BIGRec popularity exponent (encoder only)."})
    ks: list[int] = field(default_factory=lambda: [1, 5, 10, 20, 50], metadata={"help": "Cut-offs K (<= --k)."})
    n_bootstrap: int = field(  # %% because argparse %-formats help strings
        default=1000, metadata={"help": "Bootstrap resamples of users for the 95%% confidence intervals."}
    )
    n_samples: int = field(default=20, metadata={"help": "Raw prompts and answers kept in samples.jsonl."})
    seed: int = field(default=0, metadata={"help": "Seed of the user sample, candidates and bootstrap."})
    overwrite: bool = field(default=False, metadata={"help": "Replace --output if it exists."})


def make_backend(c: ZeroShotConfig, catalog: Sequence[str] | None = None) -> ChatBackend:
    """`catalog`: the dataset's item ids in order, for a personalized model's SASRec gate (hf backend)."""
    from llmrec.generation.backends import OpenAIChat, TransformersChat, VLLMChat

    if c.backend == "openai":
        if not c.base_url:
            raise LlmrecError("--backend openai needs --base_url (e.g. https://api.openai.com/v1)")
        return OpenAIChat(c.base_url, c.model, c.api_key_env, c.concurrency, c.timeout, c.max_retries)
    return TransformersChat(c.model, c.batch_size, catalog) if c.backend == "hf" else VLLMChat(c.model)


def parse_rating(answer: str) -> float | None:
    """The first number in the answer if it is a valid 1-5 rating ("4", "4.5 stars", "I'd say 3/5")."""
    match = _NUMBER.search(answer)
    value = float(match.group(1)) if match else None
    return value if value is not None and 1 <= value <= 5 else None


def run_zeroshot(c: ZeroShotConfig, backend: ChatBackend | None = None, progress: bool = True) -> dict[str, Any]:
    """Ask, ground, score and write the report folder; returns metrics.json's content."""
    ks = sorted(k for k in c.ks if k <= c.k)
    if not ks or c.k <= 0:
        raise LlmrecError(f"--ks needs a cut-off <= --k {c.k}")
    # Checked before any request.
    check_at_least(c, {}, positive=("n_bootstrap", "concurrency", "batch_size", "max_tokens", "timeout"))
    dataset = PreparedDataset.load(c.data)
    family = load_family(c.family or DEFAULT_FAMILY[c.scenario])
    template = pick_template(dataset, c.scenario, family, c.template)
    rows = sample_users(dataset, c.split, c.n_users or None, c.seed)
    if c.scenario == "rating":  # partly rated data: a target without a rating cannot score an answer
        rated = [r for r in rows if r["target_rating"] is not None]
        unrated, rows = len(rows) - len(rated), rated
    cands = None
    if c.scenario == "rerank":
        cands = candidate_lists(dataset, c.split, c.candidates_from, c.n_candidates, rows, c.seed)
    requests = build_requests(dataset, c.scenario, family, template, rows, max_history=c.max_history,
                              cold_start_history=c.cold_start_history, k=c.k, candidates=cands,
                              system_prompt=c.system_prompt)
    backend = backend or make_backend(c, dataset.items["item_id"].to_pylist())
    cache = ResponseCache(Path(c.cache) if c.cache else cache_dir("responses"))
    settings = GenerationSettings(c.max_tokens, c.temperature, c.seed)
    users = [UserContext(r.user_id, tuple(r.history_item_ids)) for r in requests]
    answers, usage = answer_all(backend, [r.conversation for r in requests], settings, cache, progress, users)
    about = {"backend": backend.name, "model": backend.model, "scenario": c.scenario, "family": family.name,
             "template": template.id, **usage}
    if c.scenario == "rating":
        about["sampled_users_without_target_rating"] = unrated
    samples = [{"user_id": r.user_id, "prompt": r.conversation, "answer": a.text, "error": a.error}
               for r, a in list(zip(requests, answers))[: c.n_samples]]
    with atomic_dir(c.output, overwrite=c.overwrite) as out:
        if c.scenario == "rating":
            metrics = _score_ratings(requests, answers, c, out)
            metrics = {"protocol": f"split: {c.split}; rating of the held-out item; {len(requests)} sampled users",
                       **about, **metrics}
            write_json(out / "metrics.json", metrics)
            write_json(out / "meta.json", provenance(dataclasses.asdict(c)))
            (out / "report.md").write_text(_rating_report(metrics), encoding="utf-8")
        else:
            eval_config = RankEvalConfig(data=c.data, output=c.output, split=c.split, ks=ks,
                                         n_bootstrap=c.n_bootstrap, seed=c.seed)
            grounder = TitleGrounder(dataset.items, fuzzy_cutoff=c.fuzzy_cutoff or None, encoder=c.encoder,
                                     gamma=c.gamma)
            records, grounding, outcomes = _ground(requests, answers, grounder)
            for sample, grounded in zip(samples, outcomes):
                sample["grounded"] = [{"mention": g.mention, "item_id": g.item_id, "method": g.method}
                                      for g in grounded]
            result = evaluate(dataset, records, eval_config, users={r.user_id for r in requests})
            protocol = _protocol(dataset, eval_config, c, len(requests))
            save_report(out, result, dataset, eval_config, protocol, {**about, **grounding}, made_by=c)
            metrics = {"protocol": protocol, **result.metrics, **about, **grounding}
        write_jsonl(out / "samples.jsonl", samples)
    return metrics


def _ground(requests: list[Request], answers: list[Completion],
            grounder: TitleGrounder) -> tuple[list[dict[str, Any]], dict[str, Any], list[list[Grounded]]]:
    """Answers -> rankings records, counts, and each answer's grounding outcomes. A mention that grounds
    to nothing stays in place as an unknown item, so `evaluate` counts it as a miss and a hallucination."""
    records, methods, empty, outcomes = [], Counter(), 0, []
    for r, a in zip(requests, answers):
        mentions = parse_list(a.text) if not a.error else []
        empty += not mentions
        grounded = grounder.ground(mentions)
        methods.update(g.method for g in grounded)
        ranked = [g.item_id if g.item_id is not None else f"unmatched: {g.mention}" for g in grounded]
        records.append({"user_id": r.user_id, "ranked_items": ranked, "target_item_id": r.target_item_id})
        outcomes.append(grounded)
    counts = {"answers_without_items": empty, "mentions": sum(methods.values()),
              **{f"grounded_{m}": methods.get(m, 0) for m in ("exact", "fuzzy", "embedding", "none")}}
    if requests and requests[0].candidate_item_ids:
        counts["targets_in_candidates"] = sum(r.target_item_id in r.candidate_item_ids for r in requests)
    return records, counts, outcomes


def _score_ratings(requests: list[Request], answers: list[Completion], c: ZeroShotConfig, out: Path) -> dict[str, Any]:
    predicted = [None if a.error else parse_rating(a.text) for a in answers]
    valid = np.array([p is not None for p in predicted])
    truth = np.array([r.target_rating for r in requests])
    rows = [{"user_id": r.user_id, "item_id": r.target_item_id, "rating": r.target_rating, "predicted": p,
             "answer": a.text} for r, a, p in zip(requests, answers, predicted)]
    write_jsonl(out / "predictions.jsonl", rows)
    metrics: dict[str, Any] = {"users_evaluated": len(requests), "invalid_answers": int((~valid).sum()),
                               "invalid_rate": float((~valid).mean()) if len(valid) else 0.0}
    user_mean = np.array([r.mean_history_rating for r in requests])
    if np.isfinite(user_mean).all() and len(user_mean):  # the bar to clear, on every user
        metrics["user_mean_baseline"] = rating_errors(user_mean, truth)
    if valid.any():
        pred = np.array([p for p in predicted if p is not None])
        err = pred - truth[valid]  # (V,)
        scores = rating_errors(pred, truth[valid])
        sq_lo, sq_hi = bootstrap_ci(err**2, n_resamples=c.n_bootstrap, seed=c.seed)
        metrics["rmse"] = {"value": scores["rmse"], "ci95": [float(np.sqrt(sq_lo)), float(np.sqrt(sq_hi))]}
        metrics["mae"] = {"value": scores["mae"],
                          "ci95": list(bootstrap_ci(np.abs(err), n_resamples=c.n_bootstrap, seed=c.seed))}
    return metrics


def _rating_report(m: dict[str, Any]) -> str:
    lines = ["# Zero-shot rating prediction", "", f"Protocol: {m['protocol']}; model {m['model']} ({m['backend']}).",
             ""]
    for name in ("rmse", "mae"):
        if name in m:
            lines.append(f"- {name}: {m[name]['value']:.4f} [{m[name]['ci95'][0]:.4f}, {m[name]['ci95'][1]:.4f}]")
    if "user_mean_baseline" in m:
        b = m["user_mean_baseline"]
        lines.append(f"- reference, each user's mean rating so far (all users): rmse {b['rmse']:.4f}, "
                     f"mae {b['mae']:.4f}")
    lines += [f"- invalid answers (no 1-5 number): {m['invalid_answers']} of {m['users_evaluated']}",
              "", "RMSE/MAE over the valid answers; 95% bootstrap CIs over users.", ""]
    return "\n".join(lines)


def _protocol(dataset: PreparedDataset, rank_config: RankEvalConfig, c: ZeroShotConfig, n_users: int) -> str:
    shown = c.cold_start_history if c.scenario == "cold_start" else c.max_history
    what = {"history": "top-k from history", "cold_start": "top-k from a truncated (cold-start) history",
            "rerank": f"re-rank {c.n_candidates} candidates from {Path(c.candidates_from).name}"}[c.scenario]
    return (f"{protocol_line(dataset, rank_config, n_users)}; zero-shot {what}; k={c.k}; "
            f"last {shown} history items shown")


def main(argv: list[str] | None = None) -> None:
    from llmrec.cli import parse_args

    (config,) = parse_args(ZeroShotConfig, argv, prog="llmrec eval zeroshot")
    m = run_zeroshot(config)
    print(f"wrote {config.output}\n{m['protocol']}")
    print(f"requests {m['n_requests']} (cache hits {m['n_cache_hits']}), tokens {m['prompt_tokens']} prompt + "
          f"{m['completion_tokens']} completion")
    if config.scenario == "rating":
        rmse = m.get("rmse", {}).get("value", float("nan"))
        base = m.get("user_mean_baseline", {}).get("rmse", float("nan"))
        print(f"rmse {rmse:.4f} (user-mean baseline {base:.4f})  invalid answers {m['invalid_answers']}/"
              f"{m['users_evaluated']}")
        return
    ks = [k for k in config.ks if k <= config.k]
    k = 10 if 10 in ks else max(ks)
    print(f"ndcg@{k} {m[f'ndcg@{k}']['value']:.4f}  recall@{k} {m[f'recall@{k}']['value']:.4f}  "
          f"hallucination_rate {m['hallucination_rate']:.4f}  answers without items {m['answers_without_items']}")


if __name__ == "__main__":
    main(sys.argv[1:])
