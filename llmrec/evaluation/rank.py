"""`llmrec eval rank`: score ranked lists against a prepared dataset's held-out split.

Protocol (printed into every report): leave-one-out targets from the dataset folder (a rankings file's
own `target_item_id` is only compared with them, unless --use_ranking_targets), full ranking over the
whole catalog, the user's history items removed from their list (unless --exclude_history false), every
user of the split averaged: a user without a list, or whose list names only unknown items, counts as a
miss, never as skipped. Unknown items stay in place as misses and are reported as hallucinations.
A model (--checkpoint) is scored on exactly the users it ranked, and the protocol says how many.
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

from llmrec.artifacts import atomic_dir, provenance, write_json, write_jsonl
from llmrec.data.dataset import PreparedDataset
from llmrec.errors import DataError, LlmrecError, check_at_least
from llmrec.evaluation.baselines import baseline_rankings
from llmrec.evaluation.metrics import beyond_accuracy, ranking_metrics
from llmrec.evaluation.report import write_plots, write_report_md
from llmrec.evaluation.result import Evaluation
from llmrec.evaluation.sampling import sample_positions
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
        metadata={
            "help": "A model folder: recipes/sft.py output (ranked by trie-constrained beam search) or "
            "llmrec train collab output (full-catalog scores)."
        },
    )
    max_users: int | None = field(
        default=None, metadata={"help": "--checkpoint: a seeded sample of this many users (default: all)."}
    )
    batch_size: int = field(default=16, metadata={"help": "--checkpoint: users per generation batch."})
    use_ranking_targets: bool = field(
        default=False,
        metadata={
            "help": "--rankings: score each user against the file's target_item_id where it names one, not "
            "the dataset's held-out item (to match a toolkit whose split broke ties differently)."
        },
    )
    split: Literal["valid", "test"] = field(default="test", metadata={"help": "Held-out split to score against."})
    ks: list[int] = field(default_factory=lambda: [1, 5, 10, 20], metadata={"help": "Cut-offs K for metric@K."})
    exclude_history: bool = field(default=True, metadata={"help": "Remove the user's history items from their list."})
    n_bootstrap: int = field(  # %% because argparse %-formats help strings
        default=1000, metadata={"help": "Bootstrap resamples of users for the 95%% confidence intervals."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the bootstrap."})
    overwrite: bool = field(default=False, metadata={"help": "Replace --output if it exists."})


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


def evaluate(
    dataset: PreparedDataset, records: list[dict[str, Any]], config: RankEvalConfig, users: set[str] | None = None
) -> Evaluation:
    """Score `records` against every user of the split, or only `users` (a sample, said in the protocol)."""
    k_max = max(config.ks)
    item_ids = dataset.items["item_id"].to_pylist()
    code = {item: c for c, item in enumerate(item_ids)}
    held_out = dataset.histories(config.split).to_pylist()
    if users is not None:
        held_out = [r for r in held_out if r["user_id"] in users]
    truth = {r["user_id"]: (r["target"], r["history"]) for r in held_out}
    by_user = {r["user_id"]: r for r in records}
    check_users_overlap(by_user, truth, dataset, config)
    counts = dict(
        users_evaluated=len(truth),
        users_without_rankings=0,
        unknown_users=sum(1 for u in by_user if u not in truth),
        listed_items=0,
        unknown_items=0,
        duplicate_items=0,
        history_items_removed=0,
        target_mismatches=0,  # records whose target_item_id is not the dataset's held-out item
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
            claimed = record.get("target_item_id")
            if claimed is not None and str(claimed) != target:
                counts["target_mismatches"] += 1
                if config.use_ranking_targets:  # opt-in only: otherwise a file could choose its own answers
                    target = str(claimed)
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


def check_users_overlap(
    by_user: dict[str, Any], truth: dict[str, Any], dataset: PreparedDataset, config: RankEvalConfig
) -> None:
    """Refuse rankings that name no user being scored: they would average to 0.0000 as if a model had
    failed, when the file is empty or was made for another dataset."""
    source = config.rankings or config.checkpoint or "rankings"
    if not by_user:
        raise DataError(source, "no rankings in it (an empty file?)" if config.rankings else
                        f"ranked no user of the {config.split} split")
    if not any(user in truth for user in by_user):
        first = next(iter(by_user))
        raise DataError(
            source,
            f"none of its {len(by_user)} users is a {config.split} user of {dataset.path} "
            f"(first: {first!r}); was it made for another dataset?",
        )


def protocol_line(
    dataset: PreparedDataset, config: RankEvalConfig, n_users: int | None = None, split_users: int | None = None
) -> str:
    """The protocol as one line. `n_users`: how many users were averaged when not every user of the split
    was scored as a possible miss; `split_users`: how many the split has, when known."""
    history = "history items excluded" if config.exclude_history else "history items kept"
    if n_users is None:
        users = "every user of the split averaged"
    elif n_users == split_users:
        users = f"all {n_users} users of the split averaged"
    elif split_users is None or config.max_users is not None:
        users = f"{n_users} sampled users averaged"
    else:
        users = f"{n_users} of the split's {split_users} users averaged"
    line = (
        f"split: {config.split} ({dataset.protocol.get('method')}, {dataset.protocol.get('order')}); "
        f"full ranking over {dataset.items.num_rows} items; {history}; {users}"
    )
    if config.use_ranking_targets:
        line += "; targets from the rankings file where it names one (--use_ranking_targets)"
    return line


def save_report(
    out: Path,
    result: Evaluation,
    dataset: PreparedDataset,
    config: Any,
    protocol: str,
    extra: dict[str, Any] | None = None,
    made_by: Any = None,
) -> None:
    """Write a report folder's files into `out` (an `atomic_dir`): metrics.json (+ `extra` keys),
    rankings.jsonl, per_user.json (for `llmrec eval compare`), meta.json (the settings of `made_by`,
    default `config`), report.md and the plots."""
    metrics = {**result.metrics, **(extra or {})}
    write_json(out / "metrics.json", {"protocol": protocol, **metrics})
    write_jsonl(out / "rankings.jsonl", ({"user_id": user, "ranked_items": items, "target_item_id": target}
                                          for user, items, target in zip(result.users, result.lists, result.targets)))
    write_json(out / "per_user.json", {"user_id": result.users, **{m: v.tolist() for m, v in result.per_user.items()}})
    write_json(out / "meta.json", provenance(dataclasses.asdict(made_by or config)))
    write_plots(out, result, dataset, config.ks)
    write_report_md(out / "report.md", metrics, protocol, config.ks)


def main(argv: list[str] | None = None) -> None:
    from llmrec.cli import parse_args

    (config,) = parse_args(RankEvalConfig, argv, prog="llmrec eval rank")
    check_config(config)
    dataset = PreparedDataset.load(config.data)
    users, split_users = None, None
    if config.rankings:
        records = load_rankings(config.rankings)
    elif config.baseline:
        records = baseline_rankings(dataset, config.split, max(config.ks), config.baseline, config.seed)
    else:
        records = checkpoint_records(config, dataset)
        # Exactly the users ranked are scored: a model never asked about a user must not count it as a miss.
        users, split_users = {r["user_id"] for r in records}, dataset.histories(config.split).num_rows
    result = evaluate(dataset, records, config, users)
    protocol = protocol_line(dataset, config, None if users is None else len(users), split_users)
    with atomic_dir(config.output, overwrite=config.overwrite) as out:
        save_report(out, result, dataset, config, protocol)
    print(f"wrote {config.output}\n{protocol}")
    print_summary(result.metrics, config)


def check_config(config: RankEvalConfig) -> None:
    if any(k <= 0 for k in config.ks):
        raise LlmrecError("--ks must be positive")
    # confidence intervals need a resample; 0 users or a 0-prompt batch would fail deep inside as a traceback
    check_at_least(config, {"n_bootstrap": 1, "max_users": 1, "batch_size": 1})
    if sum(x is not None for x in (config.rankings, config.baseline, config.checkpoint)) != 1:
        raise LlmrecError("pass exactly one of --rankings FILE, --baseline NAME or --checkpoint DIR")
    if config.use_ranking_targets and not config.rankings:
        raise LlmrecError("--use_ranking_targets applies to --rankings only")


def checkpoint_records(config: RankEvalConfig, dataset: PreparedDataset) -> list[dict[str, Any]]:
    """Rankings by the model in `config.checkpoint`: a classic model folder or a recipes/sft.py output.
    Both imports sit here because those packages build on this one (no import circle)."""
    from llmrec.collab.checkpoint import checkpoint_records as collab_records, is_collab_folder

    if is_collab_folder(config.checkpoint):  # a classic model: full-catalog scores, no generation
        every = dataset.histories(config.split)["user_id"].to_pylist()
        sample = [every[i] for i in sample_positions(len(every), config.max_users, config.seed)]
        return collab_records(config.checkpoint, dataset, config.split, max(config.ks), sample)
    from llmrec.generation.ranking import checkpoint_rankings

    return checkpoint_rankings(config, dataset)


def print_summary(m: dict[str, Any], config: RankEvalConfig) -> None:
    """The headline metrics, then what did not line up between the lists and the split, if anything."""
    k = 10 if 10 in config.ks else config.ks[-1]
    print(
        f"ndcg@{k} {m[f'ndcg@{k}']['value']:.4f}  recall@{k} {m[f'recall@{k}']['value']:.4f}  "
        f"coverage@{k} {m[f'coverage@{k}']:.4f}  hallucination_rate {m['hallucination_rate']:.4f}"
    )
    if m["users_without_rankings"] or m["unknown_users"]:
        print(
            f"users: {m['users_evaluated']} scored, {m['users_without_rankings']} of them without a list (misses); "
            f"{m['unknown_users']} in the rankings not in the {config.split} split (ignored)"
        )
    if m["target_mismatches"]:
        used = (
            "rankings file's (--use_ranking_targets)"
            if config.use_ranking_targets
            else "dataset's (--use_ranking_targets scores the file's)"
        )
        print(
            f"target_item_id differs from the dataset's held-out item for {m['target_mismatches']} of "
            f"{m['users_evaluated']} users: scored against the {used}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
