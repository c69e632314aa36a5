"""The canonical tables every reader produces and every later stage reads.

interactions: user_id (string), item_id (string), rating (float32, null if implicit), timestamp (int64,
    in the source's units; null if the source has none, and then the file order is the time order);
    optionally review (string, null where the user wrote none), present only when the source has review text.
items: item_id (string, unique), title (string), year (int32 or null), categories (list of strings),
    description (string or null).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

INTERACTIONS = pa.schema(
    [("user_id", pa.string()), ("item_id", pa.string()), ("rating", pa.float32()), ("timestamp", pa.int64())]
)
# Kept only when a reader provides them with at least one value (Amazon review text); absent otherwise.
OPTIONAL_INTERACTIONS = pa.schema([("review", pa.string())])
ITEMS = pa.schema(
    [
        ("item_id", pa.string()),
        ("title", pa.string()),
        ("year", pa.int32()),
        ("categories", pa.list_(pa.string())),
        ("description", pa.string()),
    ]
)


def conform(table: pa.Table, schema: pa.Schema, optional: pa.Schema | None = None) -> pa.Table:
    """Reorder and cast `table` to `schema`, adding absent columns as nulls; then the `optional` columns
    that `table` has with at least one value (an all-null one says nothing: it is left out)."""
    columns = []
    for f in schema:
        if f.name in table.column_names:
            columns.append(table.column(f.name).cast(f.type))
        else:
            columns.append(pa.nulls(table.num_rows, f.type))
    extra = [f for f in optional or [] if f.name in table.column_names and table.column(f.name).null_count < len(table)]
    columns += [table.column(f.name).cast(f.type) for f in extra]
    return pa.Table.from_arrays(columns, schema=pa.schema([*schema, *extra]))


@dataclass
class RawDataset:
    """What a reader returns: canonical tables plus the source files (hashed into meta.json)."""

    interactions: pa.Table
    items: pa.Table
    files: list[Path] = field(default_factory=list)
    format: str = ""

    def __post_init__(self) -> None:
        self.interactions = conform(self.interactions, INTERACTIONS, OPTIONAL_INTERACTIONS)
        self.items = conform(self.items, ITEMS)

    @property
    def has_timestamps(self) -> bool:
        return self.interactions.num_rows > 0 and self.interactions.column("timestamp").null_count == 0


def split_title_year(titles: pa.ChunkedArray | pa.Array) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """MovieLens titles carry the year: `Toy Story (1995)` -> (`Toy Story`, 1995)."""
    parts = pc.extract_regex(titles, r"^(?P<t>.*?)\s*\((?P<y>[0-9]{4})\)\s*$")
    bare = pc.struct_field(parts, "t")
    year = pc.cast(pc.struct_field(parts, "y"), pa.int32())
    return pc.if_else(pc.is_null(bare), titles, bare), year


def title_with_year(title: str, year: int | None) -> str:
    """How an item is named to a model or a person: `Toy Story (1995)`, or the bare title without a year
    (the inverse of `split_title_year`)."""
    return f"{title} ({year})" if year else title


def split_list(values: pa.ChunkedArray | pa.Array, sep: str) -> pa.ListArray:
    """`Action|Comedy` -> [`Action`, `Comedy`]; empty parts and null or empty strings give no entries."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    parts = pc.split_pattern(pc.fill_null(values, ""), sep)
    flat = pc.list_flatten(parts)
    keep = pc.not_equal(pc.utf8_length(flat), 0).to_numpy(zero_copy_only=False)
    lengths = pc.list_value_length(parts).to_numpy(zero_copy_only=False)
    owner = np.repeat(np.arange(len(lengths)), lengths)
    counts = np.bincount(owner[keep], minlength=len(lengths))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), flat.filter(pa.array(keep)))
