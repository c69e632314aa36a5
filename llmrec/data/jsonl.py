"""JSON-lines (optionally gzipped) into typed Arrow tables, with errors that name file, line and field.

The fast path is pyarrow's multi-threaded JSON reader with an explicit schema. When it rejects the file
(a malformed line, a value of another type) we re-read in Python, line by line, which is slower but can
say exactly which line and field is wrong, and can skip bad lines when the user asks for that.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from llmrec.data.skips import MISSING, SkipLog
from llmrec.errors import DataError

JsonKind = Literal["str", "float", "timestamp", "text"]
_TYPES = {"str": pa.string(), "float": pa.float64(), "timestamp": pa.int64(), "text": pa.list_(pa.string())}
_OUT = {"str": pa.string(), "float": pa.float32(), "timestamp": pa.int64(), "text": pa.list_(pa.string())}


@dataclass(frozen=True)
class JsonField:
    """Output column `name` from JSON key `key`. `text` accepts a string or a list of strings."""

    name: str
    key: str
    kind: JsonKind = "str"
    required: bool = True


def open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def first_record(path: Path) -> dict[str, Any]:
    """The first JSON object in the file, to tell dataset versions apart by their keys."""
    try:
        with open_text(path) as f:
            for number, line in enumerate(f, start=1):
                if line.strip():
                    record = json.loads(line)
                    if not isinstance(record, dict):
                        raise DataError(path, "expected a JSON object per line", line=number)
                    return record
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        raise DataError(path, f"not JSON lines: {e}", line=1) from None
    raise DataError(path, "empty file")


def read_jsonl(path: Path, fields: Sequence[JsonField], *, on_bad_lines: str, skips: SkipLog) -> pa.Table:
    try:
        table = _fast(path, fields)
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError):
        table = None
    if table is None:
        table = _slow(path, fields, on_bad_lines, skips)
    if table.num_rows == 0:
        raise DataError(path, "no records (the file is empty or every line was skipped)")
    return pa.table({f.name: table[f.name].cast(_OUT[f.kind]) for f in fields})


def _fast(path: Path, fields: Sequence[JsonField]) -> pa.Table | None:
    schema = pa.schema([(f.key, _TYPES[f.kind]) for f in fields])
    options = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    raw = pajson.read_json(str(path), parse_options=options)
    for f in fields:  # a missing required value needs its line number: let the slow path find it
        if f.required and (raw[f.key].null_count or (f.kind == "str" and pc.any(pc.equal(raw[f.key], "")).as_py())):
            return None
        if f.kind == "float" and pc.all(pc.is_finite(raw[f.key])).as_py() is False:
            return None  # Arrow reads NaN and Infinity: the slow path says which line has them
    # An empty optional string is no value, as the slow path reads it.
    blank = {f.key for f in fields if not f.required and f.kind == "str"}
    return pa.table(
        {
            f.name: pc.if_else(pc.equal(raw[f.key], ""), None, raw[f.key]) if f.key in blank else raw[f.key]
            for f in fields
        }
    )


def _slow(path: Path, fields: Sequence[JsonField], on_bad_lines: str, skips: SkipLog) -> pa.Table:
    columns: dict[str, list] = {f.name: [] for f in fields}
    for number, record in _records(path, on_bad_lines, skips):
        try:
            values = [_checked(record.get(f.key), f, path, number, skips) for f in fields]
        except ValueError as e:
            field, problem = e.args
            if on_bad_lines == "error":
                raise DataError(path, problem, line=number, field=field) from None
            skips.add(path.name, f"invalid_{field}", 1, number)
            continue
        for f, v in zip(fields, values):
            columns[f.name].append(v)
    return pa.table({f.name: pa.array(columns[f.name], type=_TYPES[f.kind]) for f in fields})


def _records(path: Path, on_bad_lines: str, skips: SkipLog) -> Iterator[tuple[int, dict]]:
    with open_text(path) as f:
        number = 0
        while True:
            try:
                line = f.readline()
            except UnicodeDecodeError as e:
                raise DataError(path, f"not valid UTF-8 ({e.reason})", line=number + 1) from None
            if not line:
                return
            number += 1
            if not line.strip():
                skips.add(path.name, "blank_line", 1, number)
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("expected a JSON object")
            except ValueError as e:
                if on_bad_lines == "error":
                    raise DataError(path, f"malformed JSON: {e}", line=number) from None
                skips.add(path.name, "malformed_json", 1, number)
                continue
            yield number, record


def _checked(v: Any, f: JsonField, path: Path, number: int, skips: SkipLog) -> Any:
    """A required field's malformed value raises; an optional one's is stored as missing and counted (an absent
    optional value is no error: `_value` returns None for it)."""
    try:
        return _value(v, f)
    except ValueError:
        if f.required:
            raise
        skips.add(path.name, f"malformed_{f.key}{MISSING}", 1, number)
        return None


def _value(v: Any, f: JsonField) -> Any:
    if v is None or v == "" or v == []:
        if f.required:
            raise ValueError(f.key, "missing value")
        return None
    if f.kind == "str":
        if isinstance(v, bool) or not isinstance(v, (str, int)):
            raise ValueError(f.key, f"expected a string, got {v!r}")
        return str(v)
    if f.kind in ("float", "timestamp"):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f.key, f"expected a number, got {v!r}")
        # Python's json reads NaN, Infinity and integers of any size: none is a rating or a time.
        if (isinstance(v, float) and not math.isfinite(v)) or (isinstance(v, int) and abs(v) >= 2**63):
            raise ValueError(f.key, f"expected a finite number, got {v!r}")
        if f.kind == "timestamp" and (v != int(v) or abs(v) >= 2**63):
            raise ValueError(f.key, f"expected a whole-number timestamp within 64 bits, got {v!r}")
        return int(v) if f.kind == "timestamp" else float(v)
    if isinstance(v, str):
        return [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValueError(f.key, f"expected a string or a list of strings, got {v!r}")
    return v
