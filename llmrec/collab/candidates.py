"""Top-N candidate export: `candidates-{split}.jsonl` in the rankings.jsonl format, for re-rankers.

valid/test: one record per user, scored from the user's whole history (as `llmrec eval rank` scores).
train: one record per training target, scored from that user's items *before* it only (`prefix_scores`),
keyed by `position` (how many of the user's interactions precede the target), so prompts for training
rows get candidates without the target leaking into the scores' input. History items never appear.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmrec.artifacts import write_jsonl
from llmrec.collab.base import CollabModel
from llmrec.collab.rank import split_records
from llmrec.collab.sequences import CollabData
from llmrec.data.dataset import PreparedDataset
from llmrec.errors import LlmrecError


def prefix_records(model: CollabModel, data: CollabData, n: int) -> list[dict[str, Any]]:
    """Candidates for every training target that has at least one earlier training item."""
    records = []
    for user, seq in zip(data.users, data.train):
        if len(seq) < 2:
            continue
        scores = model.prefix_scores(seq[:-1]).float()  # (n-1, N): row t from seq[: t + 1]
        seen = torch.zeros_like(scores, dtype=torch.bool)
        seen[torch.arange(len(seq) - 1), torch.from_numpy(seq[:-1])] = True
        scores[seen.cummax(0).values] = -torch.inf  # each row masks every item up to and including t
        top = scores.topk(min(n, data.n_items), dim=1)
        for t, (items, values) in enumerate(zip(top.indices.tolist(), top.values.tolist())):
            keep = [(i, v) for i, v in zip(items, values) if v != -np.inf]
            records.append({"user_id": user, "position": t + 1, "ranked_items": [data.item_ids[i] for i, _ in keep],
                            "scores": [round(v, 5) for _, v in keep], "target_item_id": data.item_ids[seq[t + 1]]})
    return records


def write_candidates(folder: Path, model: CollabModel, data: CollabData, dataset: PreparedDataset,
                     n: int) -> dict[str, dict[str, Any]]:
    """Write candidates-{train,valid,test}.jsonl into `folder`; -> per split: file, rows, target_in_candidates.
    A model that cannot score history prefixes (BPR) gets no train file, and the summary says so."""
    out = {}
    for split in ("train", "valid", "test"):
        if split == "train":
            try:
                records = prefix_records(model, data, n)
            except LlmrecError as e:
                print(f"candidates train: skipped ({e})")
                continue
        else:
            records = split_records(model, data, data.split(dataset, split), n)
        path = folder / f"candidates-{split}.jsonl"
        write_jsonl(path, records)
        hits = sum(r["target_item_id"] in r["ranked_items"] for r in records)
        out[split] = {"file": path.name, "rows": len(records), "target_in_candidates": hits / max(len(records), 1)}
    return out


def load_candidates(source: str | Path, split: str) -> dict[tuple[str, int | None], dict[str, Any]]:
    """`candidates-{split}.jsonl` from a model folder (or that file itself) -> (user_id, position or None)
    -> its record (ranked_items, scores, target_item_id). Eval splits are keyed by user alone."""
    from llmrec.evaluation.rank import load_rankings

    path = Path(source)
    if path.is_dir():
        path = path / f"candidates-{split}.jsonl"
    if not path.exists():
        raise LlmrecError(f"{path}: no candidates for the {split} split; export them with "
                          "`llmrec train collab ... --candidates N`")
    records = load_rankings(path, keyed_by_position=split == "train")
    return {(r["user_id"], r.get("position")): r for r in records}
