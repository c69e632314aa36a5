"""Re-ranking rows: a user's recent history and the retriever's candidates, with the target's position.

Training rows come from the retriever's candidates for training prefixes (`candidates-train.jsonl`, scored
from the items before the target only), sampled evenly over users. Only rows whose candidates hold the
target are used for training: a re-ranker changes nothing for the others, and a target pushed into the
list by hand would be the one item the retriever did not pick, a cue the model could learn instead of
taste. Their order is shuffled, so the target's letter is uniform. Valid/test rows keep the retriever's
order and every user, target among the candidates or not.
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np

from llmrec.collab.candidates import load_candidates
from llmrec.collab.sequences import CollabData
from llmrec.data.dataset import PreparedDataset
from llmrec.errors import LlmrecError


@dataclass
class RerankRow:
    user_id: str
    history: list[int]  # catalog positions, oldest first, at most max_history
    candidates: list[int]  # catalog positions in prompt order
    ranks: list[int]  # the retriever's rank of each candidate (1 = its best)
    retriever_scores: list[float]  # the retriever's score of each candidate
    label: int  # index of the target in `candidates`, -1 if it is not there


def _row(user: str, history: np.ndarray, ranked: list[str], scores: list[float], target: str, code: dict[str, int],
         n: int, max_history: int) -> RerankRow | None:
    ranked, scores = ranked[:n], scores[:n]
    if len(ranked) < n:
        return None
    label = ranked.index(target) if target in ranked else -1
    return RerankRow(user, history[-max_history:].tolist(), [code[i] for i in ranked], list(range(1, n + 1)),
                     [float(s) for s in scores], label)


def train_rows(dataset: PreparedDataset, data: CollabData, retriever: str, n: int, max_history: int, max_rows: int,
               seed: int = 0) -> tuple[list[RerankRow], dict[str, int]]:
    """-> shuffled training rows (at most max_rows, spread evenly over users) and counts of what was skipped.
    `data` is `CollabData.from_dataset(dataset)`, built once by the caller."""
    code = {item: c for c, item in enumerate(data.item_ids)}
    sequences = dict(zip(data.users, data.train))
    records = list(load_candidates(retriever, "train").values())
    held_out: dict[str, set[str]] = {}
    for split in ("valid", "test"):
        for u, t in zip(*_users_targets(data, dataset, split)):
            held_out.setdefault(u, set()).add(data.item_ids[t])
    counts = {"prefixes": len(records), "target_not_in_candidates": 0, "too_few_candidates": 0,
              "held_out_items_dropped": 0}
    by_user: dict[str, list[RerankRow]] = {}
    for r in records:
        seq = sequences[r["user_id"]]
        target = data.item_ids[seq[r["position"]]]
        # The user's valid/test items never appear in a training prompt, not even as wrong answers.
        future = held_out.get(r["user_id"], set())
        kept = [(i, s) for i, s in zip(r["ranked_items"], r["scores"]) if i not in future]
        counts["held_out_items_dropped"] += len(r["ranked_items"]) - len(kept)
        row = _row(r["user_id"], seq[: r["position"]], [i for i, _ in kept], [s for _, s in kept], target, code, n,
                   max_history)
        if row is None:
            counts["too_few_candidates"] += 1
        elif row.label < 0:
            counts["target_not_in_candidates"] += 1
        else:
            by_user.setdefault(r["user_id"], []).append(row)
    if not by_user:
        raise LlmrecError(f"{retriever}: no training prefix has its target among the top {n} candidates")
    rng = np.random.default_rng(seed)
    quota = -(-max_rows // len(by_user))  # ceil: an even share per user, fewer where a user has fewer
    rows = [r for user_rows in by_user.values() for r in
            ([user_rows[i] for i in rng.choice(len(user_rows), quota, replace=False)]
             if len(user_rows) > quota else user_rows)]
    rows = [rows[i] for i in rng.permutation(len(rows))[:max_rows]]
    for row in rows:  # shuffle candidate order: the target's letter is uniform
        order = rng.permutation(n)
        row.candidates, row.ranks = [row.candidates[i] for i in order], [row.ranks[i] for i in order]
        row.retriever_scores = [row.retriever_scores[i] for i in order]
        row.label = int(np.flatnonzero(order == row.label)[0])
    counts["rows"] = len(rows)
    return rows, counts


def _users_targets(data: CollabData, dataset: PreparedDataset, split: str) -> tuple[list[str], list[int]]:
    h = data.split(dataset, split)
    return h.users, h.targets.tolist()


def eval_rows(dataset: PreparedDataset, data: CollabData, retriever: str, split: str, n: int,
              max_history: int) -> list[RerankRow]:
    """One row per user of `split`, candidates in the retriever's order; label -1 where the target is missing."""
    code = {item: c for c, item in enumerate(data.item_ids)}
    held_out = data.split(dataset, split)
    records = {user: r for (user, _), r in load_candidates(retriever, split).items()}
    rows = []
    for user, history, target in zip(held_out.users, held_out.histories, held_out.targets):
        r = records.get(user)
        row = None if r is None else _row(user, history, r["ranked_items"], r["scores"], data.item_ids[target], code,
                                          n, max_history)
        if row is None:
            raise LlmrecError(f"{retriever}: fewer than {n} {split} candidates for user {user}; export at least "
                              f"--candidates {n}")
        rows.append(row)
    return rows
