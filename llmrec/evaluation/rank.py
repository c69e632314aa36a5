"""`llmrec eval rank`: score ranked lists against a prepared dataset's held-out split.

Protocol (printed into every report): leave-one-out targets from the dataset folder, full ranking over
the whole catalog, the user's history items removed from their list (unless --exclude_history false),
every user of the split averaged: a user without a list, or whose list names only unknown items, counts
as a miss, never as skipped. Unknown items stay in place as misses and are reported as hallucinations.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow.compute as pc

from llmrec.artifacts import atomic_dir, provenance, write_json
from llmrec.data.dataset import PreparedDataset
from llmrec.errors import DataError, LlmrecError
from llmrec.evaluation.baselines import baseline_rankings
from llmrec.evaluation.metrics import beyond_accuracy, ranking_metrics
from llmrec.evaluation.report import write_plots, write_report_md
from llmrec.evaluation.stats import bootstrap_ci


@dataclass
class RankEvalConfig:
    data: str = field(metadata={"help": "The prepared dataset folder the rankings were made for."})
    output: str = field(metadata={"help": "Report folder to write (metrics.json, rankings.jsonl, report.md, plots)."})
    rankings: str | None = field(
        default=None, metadata={"help": "JSONL, one user per line: user_id, ranked_items, optional target_item_id."}
    )
    baseline: Literal["most_popular", "random"] | None = field(
        default=None, metadata={"help": "Score a reference ranker instead of --rankings."}
    )
    checkpoint: str | None = field(
        default=None,
        metadata={"help": "A model folder: recipes/sft.py output (ranked by trie-constrained beam search) or "
                          "llmrec train collab output (full-catalog scores)."},
    )
    max_users: int | None = field(
        default=None, metadata={"help": "--checkpoint: a seeded sample of this many users (default: all)."}
    )
    batch_size: int = field(default=16, metadata={"help": "--checkpoint: users per generation batch."})
    split: Literal["valid", "test"] = field(default="test", metadata={"help": "Held-out split to score against."})
    ks: list[int] = field(default_factory=lambda: [1, 5, 10, 20], metadata={"help": "Cut-offs K for metric@K."})
    exclude_history: bool = field(default=True, metadata={"help": "Remove the user's history items from their list."})
    n_bootstrap: int = field(  # %% because argparse %-formats help strings
        default=1000, metadata={"help": "Bootstrap resamples of users for the 95%% confidence intervals."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the bootstrap."})
    overwrite: bool = field(default=False, metadata={"help": "Replace --output if it exists."})


@dataclass
class Evaluation:
    metrics: dict[str, Any]  # flat: "ndcg@10" -> {"value", "ci95"}; beyond-accuracy -> value; counts
    per_user: dict[str, np.ndarray]  # metric -> (U,)
    users: list[str]
    lists: list[list[str]]  # cleaned lists, unknown items kept in place
    targets: list[str]
    history_lengths: np.ndarray  # (U,)
    ranked: np.ndarray  # (U, K) item codes, -1 where no catalog item stands
    target_codes: np.ndarray  # (U,) item code of each target, -2 if it is not in the catalog


def load_rankings(path: str | Path, keyed_by_position: bool = False) -> list[dict[str, Any]]:
    """Read a rankings.jsonl; each user once, or with `keyed_by_position` each (user_id, position) once
    (candidates for training prefixes, `llmrec.collab.candidates`)."""
    path, records, seen = Path(path), [], set()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(path, f"malformed JSON: {e.msg}", line=number) from None
        if not isinstance(r, dict) or "user_id" not in r or not isinstance(r.get("ranked_items"), list):
            raise DataError(path, "expected an object with user_id and a ranked_items list", line=number)
        user = str(r["user_id"])
        if keyed_by_position and not isinstance(r.get("position"), int):
            raise DataError(path, "expected an integer position", line=number, field="position")
        key = (user, r.get("position")) if keyed_by_position else user
        if key in seen:
            raise DataError(path, f"user {user!r} appears twice", line=number, field="user_id")
        seen.add(key)
        records.append({**r, "user_id": user, "ranked_items": [str(i) for i in r["ranked_items"]]})
    return records


def evaluate(dataset: PreparedDataset, records: list[dict[str, Any]], config: RankEvalConfig,
             users: set[str] | None = None) -> Evaluation:
    """Score `records` against every user of the split, or only `users` (a sample, said in the protocol)."""
    k_max = max(config.ks)
    item_ids = dataset.items["item_id"].to_pylist()
    code = {item: c for c, item in enumerate(item_ids)}
    held_out = dataset.histories(config.split).to_pylist()
    if users is not None:
        held_out = [r for r in held_out if r["user_id"] in users]
    truth = {r["user_id"]: (r["target"], r["history"]) for r in held_out}
    by_user = {r["user_id"]: r for r in records}
    counts = dict(
        users_evaluated=len(truth),
        users_without_rankings=0,
        unknown_users=sum(1 for u in by_user if u not in truth),
        listed_items=0,
        unknown_items=0,
        duplicate_items=0,
        history_items_removed=0,
        targets_overridden=0,
    )

    users, lists, targets, hist_len = [], [], [], []
    ranked = np.full((len(truth), k_max), -1, np.int64)
    for row, (user, (target, history)) in enumerate(truth.items()):
        record = by_user.get(user)
        if record is None:
            counts["users_without_rankings"] += 1
            items = []
        else:
            items = record["ranked_items"]
            if record.get("target_item_id") not in (None, target):
                target = str(record["target_item_id"])
                counts["targets_overridden"] += 1
        history_set = set(history) if config.exclude_history else set()
        cleaned, seen = [], set()
        for item in items:
            if item in seen:
                counts["duplicate_items"] += 1
            elif item in history_set:
                counts["history_items_removed"] += 1
            else:
                seen.add(item)
                cleaned.append(item)
        top = cleaned[:k_max]
        counts["listed_items"] += len(top)
        counts["unknown_items"] += sum(1 for item in top if item not in code)
        ranked[row, : len(top)] = [code.get(item, -1) for item in top]
        users.append(user), lists.append(cleaned), targets.append(target), hist_len.append(len(history))

    target_codes = np.array([code.get(t, -2) for t in targets])  # -2 never matches a list position
    per_user = ranking_metrics(ranked == target_codes[:, None], np.ones(len(users)), config.ks)
    metrics: dict[str, Any] = {}
    for name, values in per_user.items():
        lo, hi = bootstrap_ci(values, n_resamples=config.n_bootstrap, seed=config.seed)
        metrics[name] = {"value": float(values.mean()), "ci95": [lo, hi]}
    n_users = pc.count_distinct(dataset.interactions["user_id"]).as_py()
    metrics.update(beyond_accuracy(ranked, dataset.items["popularity"].to_numpy(), config.ks, n_users, target_codes))
    metrics["hallucination_rate"] = counts["unknown_items"] / counts["listed_items"] if counts["listed_items"] else 0.0
    metrics.update(counts)
    return Evaluation(metrics, per_user, users, lists, targets, np.array(hist_len), ranked, target_codes)


def protocol_line(dataset: PreparedDataset, config: RankEvalConfig, n_users: int | None = None) -> str:
    history = "history items excluded" if config.exclude_history else "history items kept"
    users = "every user of the split averaged" if n_users is None else f"{n_users} sampled users averaged"
    return (
        f"split: {config.split} ({dataset.protocol.get('method')}, {dataset.protocol.get('order')}); "
        f"full ranking over {dataset.items.num_rows} items; {history}; {users}"
    )


def save_report(out: Path, result: Evaluation, dataset: PreparedDataset, config: Any, protocol: str,
                extra: dict[str, Any] | None = None, made_by: Any = None) -> None:
    """Write a report folder's files into `out` (an `atomic_dir`): metrics.json (+ `extra` keys),
    rankings.jsonl, per_user.json (for `llmrec eval compare`), meta.json (the settings of `made_by`,
    default `config`), report.md and the plots."""
    metrics = {**result.metrics, **(extra or {})}
    write_json(out / "metrics.json", {"protocol": protocol, **metrics})
    with open(out / "rankings.jsonl", "w", encoding="utf-8") as f:
        for user, items, target in zip(result.users, result.lists, result.targets):
            f.write(json.dumps({"user_id": user, "ranked_items": items, "target_item_id": target}) + "\n")
    write_json(out / "per_user.json", {"user_id": result.users, **{m: v.tolist() for m, v in result.per_user.items()}})
    write_json(out / "meta.json", provenance(dataclasses.asdict(made_by or config)))
    write_plots(out, result, dataset, config.ks)
    write_report_md(out / "report.md", metrics, protocol, config.ks)


def main(argv: list[str] | None = None) -> None:
    from trl import TrlParser

    (config,) = TrlParser(RankEvalConfig, prog="llmrec eval rank").parse_args_and_config(argv)
    if any(k <= 0 for k in config.ks):
        raise LlmrecError("--ks must be positive")
    if sum(x is not None for x in (config.rankings, config.baseline, config.checkpoint)) != 1:
        raise LlmrecError("pass exactly one of --rankings FILE, --baseline NAME or --checkpoint DIR")
    dataset = PreparedDataset.load(config.data)
    users = None
    if config.rankings:
        records = load_rankings(config.rankings)
    elif config.baseline:
        records = baseline_rankings(dataset, config.split, max(config.ks), config.baseline, config.seed)
    else:
        from llmrec.collab.checkpoint import checkpoint_records, is_collab_folder
        from llmrec.evaluation.generative import checkpoint_rankings, sample_positions

        if is_collab_folder(config.checkpoint):  # a classic model: full-catalog scores, no generation
            every = dataset.histories(config.split)["user_id"].to_pylist()
            sample = [every[i] for i in sample_positions(len(every), config.max_users, config.seed)]
            records = checkpoint_records(config.checkpoint, dataset, config.split, max(config.ks), sample)
        else:
            records = checkpoint_rankings(config, dataset)
        users = {r["user_id"] for r in records} if config.max_users else None
    result = evaluate(dataset, records, config, users)
    protocol = protocol_line(dataset, config, len(users) if users is not None else None)
    with atomic_dir(config.output, overwrite=config.overwrite) as out:
        save_report(out, result, dataset, config, protocol)
    k = 10 if 10 in config.ks else config.ks[-1]
    m = result.metrics
    print(f"wrote {config.output}\n{protocol}")
    print(
        f"ndcg@{k} {m[f'ndcg@{k}']['value']:.4f}  recall@{k} {m[f'recall@{k}']['value']:.4f}  "
        f"coverage@{k} {m[f'coverage@{k}']:.4f}  hallucination_rate {m['hallucination_rate']:.4f}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
