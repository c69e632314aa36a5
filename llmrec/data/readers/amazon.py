"""Amazon reviews, 2018 (McAuley lab, `reviewerID`/`asin`/`overall`/`unixReviewTime`/`reviewText`) and 2023
(`user_id`/`parent_asin`/`rating`/`timestamp` in ms/`text`), with the matching metadata file for titles and
text. The review text becomes the interactions' `review` column (the explanation prompt family's target).

The version is told by the keys of each file's first record. 2023 items are keyed by `parent_asin`, as in
the 2023 release's own benchmarks, so variants of one product are one item.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from llmrec.data.jsonl import JsonField, first_record, read_jsonl
from llmrec.data.schema import RawDataset
from llmrec.data.skips import SkipLog
from llmrec.errors import DataError

REVIEWS = {
    "2018": [
        JsonField("user_id", "reviewerID"),
        JsonField("item_id", "asin"),
        JsonField("rating", "overall", "float", required=False),
        JsonField("timestamp", "unixReviewTime", "timestamp"),
        JsonField("review", "reviewText", required=False),
    ],
    "2023": [
        JsonField("user_id", "user_id"),
        JsonField("item_id", "parent_asin"),
        JsonField("rating", "rating", "float", required=False),
        JsonField("timestamp", "timestamp", "timestamp"),
        JsonField("review", "text", required=False),
    ],
}
META = {
    "2018": [
        JsonField("item_id", "asin"),
        JsonField("title", "title", required=False),
        JsonField("categories", "category", "text", required=False),
        JsonField("description", "description", "text", required=False),
    ],
    "2023": [
        JsonField("item_id", "parent_asin"),
        JsonField("title", "title", required=False),
        JsonField("categories", "categories", "text", required=False),
        JsonField("description", "description", "text", required=False),
    ],
}


def _version(path: Path, keys_2018: str, keys_2023: str) -> str:
    record = first_record(path)
    if keys_2023 in record:
        return "2023"
    if keys_2018 in record:
        return "2018"
    raise DataError(path, f"neither Amazon 2018 ('{keys_2018}') nor 2023 ('{keys_2023}') keys in the first record")


def read_amazon(reviews: Path, meta: Path, *, on_bad_lines: str, skips: SkipLog) -> RawDataset:
    version = _version(reviews, "reviewerID", "parent_asin")
    meta_version = _version(meta, "asin", "parent_asin")
    if meta_version != version:
        raise DataError(meta, f"metadata is Amazon {meta_version} but the reviews are Amazon {version}")
    interactions = read_jsonl(reviews, REVIEWS[version], on_bad_lines=on_bad_lines, skips=skips)
    raw = read_jsonl(meta, META[version], on_bad_lines=on_bad_lines, skips=skips)
    # Items without a title are kept here with an empty one; the processing step drops them, counted.
    items = {
        "item_id": raw["item_id"],
        "title": pc.fill_null(raw["title"], ""),
        "categories": raw["categories"],
        "description": pc.binary_join(raw["description"], " "),
    }
    return RawDataset(interactions, pa.table(items), files=[reviews, meta], format=f"amazon-{version}")
