"""Delimited text (TSV, CSV, `|`, `::`) into typed Arrow tables, with errors that name file, line and field.

pyarrow's CSV reader is fast but reports bad values by column and row index, not by line, and it loses
line numbers once it skips a malformed row. This module (our own; no library does it) keeps the fast
multi-threaded read for clean files and pays for a single-threaded re-read only when a row is malformed,
then maps every Arrow row back to its physical line so messages read `u.data:1234: field 'rating': ...`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from llmrec.data.skips import MISSING, SkipLog
from llmrec.errors import DataError

# "id": a string kept as is, but it must be a whole number (MovieLens ids are, by their README).
# "year": a 4-digit year ("1995", or "1995.0" from float-typed fields) -> int32.
# "date": a MovieLens date ("01-Jan-1995") -> timestamp[s]. "flag": "0" or "1" -> bool.
Kind = Literal["str", "id", "int", "float", "timestamp", "year", "date", "flag"]
OnBadLines = Literal["error", "skip"]

_INT = r"^[+-]?[0-9]+$"
_FLOAT = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_YEAR = r"^[0-9]{4}(\.0*)?$"
_DATE = "%d-%b-%Y"
_INT64_LIMIT = 2.0**63  # floats at or beyond this do not fit an int64 timestamp
_EXPECTED = {
    "id": "a numeric id",
    "int": "an integer (64-bit)",
    "float": "a number",
    "timestamp": "a number (timestamp)",
    "year": "a 4-digit year",
    "date": "a date like 01-Jan-1995",
    "flag": "0 or 1",
}


@dataclass(frozen=True)
class Column:
    """One field to keep: its output name, its 0-based position in the line, and its type."""

    name: str
    index: int
    kind: Kind = "str"
    required: bool = True
    label: str | None = None  # how an optional field is named in skip counts (columns may share one)


def read_delimited(
    path: str | Path,
    columns: Sequence[Column],
    *,
    n_fields: int,
    delimiter: str,
    skips: SkipLog,
    header_lines: int = 0,
    encoding: str = "utf-8",
    quote_char: str | bool = False,
    on_bad_lines: OnBadLines = "error",
    data: bytes | None = None,
) -> pa.Table:
    """Read `path` (or `data`, already-transformed bytes of it) into a table with one column per `Column`.

    Policy: blank lines are skipped and counted. A line with the wrong number of fields, or a missing or
    malformed required value, raises `DataError` naming the line, or with `on_bad_lines="skip"` is skipped
    and counted per reason in `skips`. A malformed optional value is stored as missing (null) and counted,
    and its line is kept. Ints and timestamps come out as int64, floats as float64.
    """
    path = Path(path)
    table, skipped_lines = _read_strings(path, columns, n_fields, delimiter, header_lines, encoding, quote_char, data)
    if skipped_lines.size and on_bad_lines == "error":
        line = int(skipped_lines[0])
        raise DataError(path, f"expected {n_fields} fields separated by {delimiter!r}", line=line)
    skips.add(path.name, "wrong_field_count", skipped_lines.size, _first(skipped_lines))

    # Map Arrow row i to its physical line: the header, then i, plus every skipped line before it.
    # p[j] = how many good rows precede skipped line j, so row i comes after skipped line j iff p[j] <= i.
    p = skipped_lines - header_lines - np.arange(skipped_lines.size) - 1

    def line_of(rows: np.ndarray) -> np.ndarray:
        return header_lines + 1 + rows + np.searchsorted(p, rows, side="right")

    values = {c.name: pc.utf8_trim_whitespace(table.column(f"f{c.index}")) for c in columns}
    empty = {name: _is_empty(v) for name, v in values.items()}
    blank = np.logical_and.reduce(list(empty.values()))
    keep = ~blank
    skips.add(path.name, "blank_line", int(blank.sum()), _first(line_of(np.flatnonzero(blank))))

    typed, malformed_optional = {}, {}
    for col in columns:
        typed[col.name], malformed = _typed(values[col.name], empty[col.name], col.kind)
        if not col.required:  # already null in `typed`: count it once per line under the column's label
            label = col.label or col.name
            malformed_optional[label] = malformed_optional.get(label, False) | malformed
            continue
        bad = (malformed | empty[col.name]) & keep
        if not bad.any():
            continue
        rows = np.flatnonzero(bad)
        if on_bad_lines == "error":
            value = values[col.name][int(rows[0])].as_py()
            problem = "missing value" if value == "" else _problem(value, col.kind)
            raise DataError(path, problem, line=int(line_of(rows[:1])[0]), field=col.name)
        skips.add(path.name, f"invalid_{col.name}", rows.size, int(line_of(rows[:1])[0]))
        keep &= ~bad

    if not keep.any():
        raise DataError(path, "no data rows (the file is empty or every line was skipped)")
    for label, malformed in malformed_optional.items():
        rows = np.flatnonzero(malformed & keep)
        skips.add(path.name, f"malformed_{label}{MISSING}", rows.size, _first(line_of(rows)))
    result = pa.table(typed)
    return result if keep.all() else result.filter(pa.array(keep))


def _read_strings(path, columns, n_fields, delimiter, header_lines, encoding, quote_char, data):
    names = [f"f{i}" for i in range(n_fields)]
    bad: list[int | None] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        bad.append(row.number)
        return "skip"

    def read(use_threads: bool) -> pa.Table:
        source = io.BytesIO(data) if data is not None else str(path)
        return pacsv.read_csv(
            source,
            read_options=pacsv.ReadOptions(
                column_names=names, skip_rows=header_lines, use_threads=use_threads, encoding=encoding
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter, quote_char=quote_char, ignore_empty_lines=False, invalid_row_handler=on_invalid
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names},
                include_columns=sorted({f"f{c.index}" for c in columns}),
                strings_can_be_null=False,
            ),
        )

    try:
        if data is None and path.stat().st_size == 0:
            raise DataError(path, "empty file")
        table = read(use_threads=True)
        if bad:  # multi-threaded reads do not know line numbers: re-read this file on one thread
            bad.clear()
            table = read(use_threads=False)
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except pa.ArrowInvalid as e:
        if "UTF8" in str(e) or "decode" in str(e).lower():
            _raise_encoding_error(path, data, encoding)
        if "Empty CSV file" in str(e):
            raise DataError(path, "no data rows (the file is empty)") from None
        raise DataError(path, f"cannot parse: {e}") from None
    return table, np.array(sorted(b for b in bad if b is not None), dtype=np.int64)


def _raise_encoding_error(path: Path, data: bytes | None, encoding: str) -> None:
    raw = data if data is not None else path.read_bytes()
    for number, line in enumerate(raw.split(b"\n"), start=1):
        try:
            line.decode(encoding)
        except UnicodeDecodeError as e:
            raise DataError(
                path,
                f"not valid {encoding} (byte 0x{line[e.start]:02x} at column {e.start + 1}); "
                "pass --encoding with the file's encoding (MovieLens item files are latin-1)",
                line=number,
            ) from None
    raise DataError(path, f"not valid {encoding}")


def _is_empty(values: pa.ChunkedArray) -> np.ndarray:
    return pc.equal(pc.utf8_length(values), 0).to_numpy(zero_copy_only=False)


def _typed(values: pa.ChunkedArray, empty: np.ndarray, kind: Kind) -> tuple[pa.ChunkedArray, np.ndarray]:
    """Typed values (null where empty or malformed) and the mask of malformed rows (present, not of the kind).

    Numbers are checked with a cast (cheap next to reading the file); only when it fails do the regexes run
    to find the malformed rows.
    """
    if kind == "str":
        return values, np.zeros(len(values), bool)
    if empty.any():
        values = pc.if_else(pa.array(~empty), values, None)
    ok = _valid(values, kind)  # (N,) True where null or well-formed
    if not ok.all():
        values = pc.if_else(pa.array(ok), values, None)
    return _convert(values, kind), ~ok


def _valid(values: pa.ChunkedArray, kind: Kind) -> np.ndarray:
    """(N,) True where the value is null (absent) or well-formed for `kind`."""
    if kind in ("id", "int"):
        try:
            pc.cast(values, pa.int64())
            return np.ones(len(values), bool)
        except pa.ArrowInvalid:  # ids are strings and may be any length; ints must fit 64 bits
            ok = _ok(values, pc.match_substring_regex(values, _INT))
            return ok if kind == "id" else ok & _fits_int64(values, ok)
    if kind in ("float", "timestamp"):
        try:
            number = pc.cast(values, pa.float64())
        except pa.ArrowInvalid:
            number = pc.cast(pc.if_else(pc.match_substring_regex(values, _FLOAT), values, None), pa.float64())
        good = pc.is_finite(number)  # Arrow parses "nan" and "inf"; neither is a rating or a time
        if kind == "timestamp":  # whole units that fit an int64
            good = pc.and_(good, pc.and_(pc.equal(pc.floor(number), number), pc.less(pc.abs(number), _INT64_LIMIT)))
        return _ok(values, good)
    if kind == "year":
        return _ok(values, pc.match_substring_regex(values, _YEAR))
    if kind == "date":
        return _ok(values, pc.is_valid(pc.strptime(values, format=_DATE, unit="s", error_is_null=True)))
    if kind == "flag":
        return _ok(values, pc.is_in(values, value_set=pa.array(["0", "1"])))
    raise ValueError(f"unknown column kind {kind!r}")


def _ok(values: pa.ChunkedArray, good: pa.ChunkedArray) -> np.ndarray:
    """Null values are fine (absent, not malformed); present ones must be `good` (null there means not)."""
    return pc.if_else(pc.is_null(values), True, pc.fill_null(good, False)).to_numpy(zero_copy_only=False)


def _fits_int64(values: pa.ChunkedArray, is_int: np.ndarray) -> np.ndarray:
    """Only digit strings longer than 18 characters can overflow: check those few in Python."""
    ok = np.ones(len(values), bool)
    long = pc.fill_null(pc.greater(pc.utf8_length(values), 18), False).to_numpy(zero_copy_only=False) & is_int
    for row in np.flatnonzero(long).tolist():
        ok[row] = -(2**63) <= int(values[row].as_py()) < 2**63
    return ok


def _convert(values: pa.ChunkedArray, kind: Kind) -> pa.ChunkedArray:
    """Well-formed (or null) strings -> the kind's type."""
    if kind == "id":
        return values
    if kind == "int":
        return pc.cast(values, pa.int64())
    if kind == "float":
        return pc.cast(values, pa.float64())
    if kind == "timestamp":
        try:  # whole numbers directly: a float64 round trip would round ones beyond 2**53
            return pc.cast(values, pa.int64())
        except pa.ArrowInvalid:  # "100.0", "1e9"
            return pc.cast(pc.cast(values, pa.float64()), pa.int64())
    if kind == "year":
        return pc.cast(pc.utf8_slice_codeunits(values, 0, 4), pa.int32())
    if kind == "date":
        return pc.strptime(values, format=_DATE, unit="s", error_is_null=True)
    return pc.equal(values, "1")  # flag


def _problem(value: str, kind: Kind) -> str:
    try:
        number = float(value)
    except ValueError:
        number = None
    if kind in ("float", "timestamp") and number is not None and not math.isfinite(number):
        return f"expected a finite number, got {value!r}"
    if kind == "timestamp" and number is not None and abs(number) >= _INT64_LIMIT:
        return f"timestamp beyond the 64-bit range, got {value!r}"
    if kind == "timestamp" and number is not None and not number.is_integer():
        return f"fractional timestamps are not supported (store whole units), got {value!r}"
    return f"expected {_EXPECTED[kind]}, got {value!r}"


def _first(lines: np.ndarray) -> int | None:
    return int(lines[0]) if len(lines) else None
