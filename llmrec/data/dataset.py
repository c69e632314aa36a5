"""A prepared dataset folder, as later stages (indexing, prompts, evaluation) read it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from llmrec.artifacts import read_json
from llmrec.errors import LlmrecError

FILES = ("items.parquet", "interactions.parquet", "split.json", "stats.json", "meta.json")


@dataclass
class PreparedDataset:
    path: Path
    items: pa.Table
    interactions: pa.Table
    stats: dict[str, Any]
    meta: dict[str, Any]
    protocol: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path) -> PreparedDataset:
        path = Path(path)
        missing = [f for f in FILES if not (path / f).exists()]
        if missing:
            raise LlmrecError(
                f"{path}: not a prepared dataset (missing {', '.join(missing)}); run `llmrec data prepare`"
            )
        return cls(
            path=path,
            items=_read_parquet(path / "items.parquet"),
            interactions=_read_parquet(path / "interactions.parquet"),
            stats=read_json(path / "stats.json"),
            meta=read_json(path / "meta.json"),
            protocol=read_json(path / "split.json"),
        )

    @property
    def provides(self) -> frozenset[str]:
        """The optional signals this dataset carries: "ratings" (explicit feedback; implicit feedback has
        none) and "reviews" (review text, from Amazon). Prompt families and scenarios that need one refuse
        datasets without it."""
        inter = self.interactions
        ratings = inter.num_rows > inter["rating"].null_count
        reviews = "review" in inter.column_names and inter["review"].null_count < inter.num_rows
        return frozenset(name for name, has in (("ratings", ratings), ("reviews", reviews)) if has)

    def histories(self, split: str) -> pa.Table:
        """One row per user with a `split` target: user_id, history (item ids before it, in time order),
        history_ratings (their ratings), target, target_rating.

        The history of a valid target is the user's training items; of a test target, training + valid items.
        Only for leave-one-out splits, where each user has at most one target per split.
        """
        if self.protocol.get("method") != "loo":
            raise LlmrecError(
                f"{self.path}: histories() needs a leave-one-out split, not {self.protocol.get('method')}"
            )
        allowed = {"valid": ["train"], "test": ["train", "valid"]}.get(split)
        if allowed is None:
            raise LlmrecError(f"split must be 'valid' or 'test', not {split!r}")
        inter = self.interactions
        before = inter.filter(pc.is_in(inter["split"], value_set=pa.array(allowed)))
        # Ordered aggregation (one thread) keeps each user's items in time order.
        hist = before.group_by("user_id", use_threads=False).aggregate([("item_id", "list"), ("rating", "list")])
        targets = inter.filter(pc.equal(inter["split"], split)).select(["user_id", "item_id", "rating"])
        where = pc.index_in(targets["user_id"], value_set=hist["user_id"])
        return pa.table(
            {
                "user_id": targets["user_id"],
                "history": hist["item_id_list"].take(where),
                "history_ratings": hist["rating_list"].take(where),
                "target": targets["item_id"],
                "target_rating": targets["rating"],
            }
        )


def _read_parquet(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as e:  # a truncated or foreign file: Arrow's own error is a traceback
        raise LlmrecError(f"{path}: not a readable Parquet file ({e}); prepare the dataset again") from None
