"""The questions of a zero-shot evaluation, one chat request per sampled user of the held-out split.

Scenarios after Di Palma et al. 2023, "Evaluating ChatGPT as a Recommender System: A Rigorous Approach":
- history: the user's most recent rated items in, a top-k list of titles out (family `zeroshot`).
- cold_start: the same question with only the last few items, a simulated cold-start user (MovieLens
  users all have >= 20 ratings, so short histories are made by truncation; the protocol line says so).
- rerank: another recommender's top-n candidates (most popular, random, or any rankings.jsonl such as
  RecBole's SASRec) to be re-ordered (family `rerank`). The held-out item may be missing from them.
- rating: the held-out item's star rating (family `rating`), scored with RMSE/MAE.
Histories are what came before the held-out item in time (train, plus valid for test targets).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from llmrec.data.dataset import PreparedDataset
from llmrec.errors import DataError, LlmrecError
from llmrec.indexing.p5 import title_strings
from llmrec.prompts.render import rating_text
from llmrec.prompts.templates import Family, Template, needs_none

DEFAULT_FAMILY = {"history": "zeroshot", "cold_start": "zeroshot", "rerank": "rerank", "rating": "rating"}
SCENARIO_TASK = {"history": "zeroshot", "cold_start": "zeroshot", "rerank": "rerank", "rating": "rating"}


@dataclass
class Request:
    user_id: str
    conversation: list[dict[str, str]]
    target_item_id: str
    target_rating: float
    history_item_ids: list[str]  # what the prompt showed
    candidate_item_ids: list[str]  # rerank only
    mean_history_rating: float  # the reference rating predictor: the user's mean so far


def pick_template(dataset: PreparedDataset, scenario: str, family: Family, template_id: str | None) -> Template:
    """`template_id` from `family`, or its first template the dataset can fill. Templates that show ratings
    cannot be filled from implicit feedback, so the rating scenario refuses such data outright."""
    usable = family.usable(dataset.provides)
    if template_id:
        template = next((t for t in family.templates if t.id == template_id), None)
        if template is None:
            raise LlmrecError(f"--template {template_id!r} is not in family {family.name}: "
                              f"{', '.join(t.id for t in family.templates)}")
        if template in usable.templates:
            return template
        if usable.templates:
            lacking = needs_none(template.needs - dataset.provides)
            raise LlmrecError(f"{dataset.path}: --template {template_id} {lacking}; "
                              f"use one of {', '.join(t.id for t in usable.templates)}")
    if not usable.templates:
        raise LlmrecError(f"{dataset.path}: --scenario {scenario} {needs_none(family.lacking(dataset.provides))}")
    return usable.templates[0]


def sample_users(dataset: PreparedDataset, split: str, n_users: int | None, seed: int) -> list[dict[str, Any]]:
    """A seeded sample of `n_users` held-out rows (user_id, history, history_ratings, target, target_rating)."""
    from llmrec.evaluation.sampling import sample_positions

    rows = dataset.histories(split).to_pylist()
    return [rows[i] for i in sample_positions(len(rows), n_users, seed)]


def candidate_lists(dataset: PreparedDataset, split: str, source: str, n: int, rows: list[dict[str, Any]],
                    seed: int) -> dict[str, list[str]]:
    """Each sampled user's top-n candidates from `source`: most_popular, random, or a rankings.jsonl path
    (history items are skipped, as `llmrec eval rank` does). `rows` are `sample_users` rows."""
    from llmrec.evaluation.baselines import baseline_rankings
    from llmrec.evaluation.rank import load_rankings

    if source in ("most_popular", "random"):
        records = baseline_rankings(dataset, split, n, source, seed)
    else:
        records = load_rankings(source)
    history = {r["user_id"]: set(r["history"]) for r in rows}
    out = {r["user_id"]: [i for i in r["ranked_items"] if i not in history[r["user_id"]]][:n]
           for r in records if r["user_id"] in history}
    missing = [u for u in history if not out.get(u)]
    if missing:
        raise DataError(source, f"no candidates for {len(missing)} of {len(rows)} users (first: {missing[0]})")
    return out


def build_requests(dataset: PreparedDataset, scenario: str, family: Family, template: Template,
                   rows: list[dict[str, Any]], *, max_history: int, cold_start_history: int, k: int,
                   candidates: dict[str, list[str]] | None = None,
                   system_prompt: str | None = None) -> list[Request]:
    if family.task != SCENARIO_TASK[scenario]:
        raise LlmrecError(f"--scenario {scenario} needs a {SCENARIO_TASK[scenario]} family, "
                          f"not {family.name} ({family.task})")
    ids = dataset.items["item_id"].to_pylist()
    title = dict(zip(ids, title_strings(dataset.items)[0]))
    keep = cold_start_history if scenario == "cold_start" else max_history
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    requests = []
    for row in rows:
        history, ratings = row["history"][-keep:], row["history_ratings"][-keep:]
        shown = [title[i] for i in history]
        # Only rated items are "rated" (implicit feedback has none; pick_template keeps such data off templates
        # that need them).
        rated = [{"item": t, "rating": rating_text(r)} for t, r in zip(shown, ratings) if r is not None]
        fields: dict[str, Any] = {"user_id": row["user_id"], "history": shown, "rated_history": rated, "k": k,
                                  "target": title[row["target"]]}
        cands = candidates[row["user_id"]] if scenario == "rerank" and candidates else []
        if scenario == "rerank":
            fields.update(candidates=[title.get(i, i) for i in cands], n_candidates=len(cands))
        elif scenario == "rating":
            fields.update(item=title[row["target"]], target=rating_text(row["target_rating"]))
        text, _ = template.render(fields)
        known = [r for r in row["history_ratings"] if r is not None]
        target_rating = float("nan") if row["target_rating"] is None else float(row["target_rating"])
        requests.append(Request(row["user_id"], [*system, {"role": "user", "content": text}], row["target"],
                                target_rating, list(history), cands, float(np.mean(known)) if known else float("nan")))
    return requests
