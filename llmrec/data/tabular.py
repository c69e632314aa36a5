"""Delimited text (TSV, CSV, `|`, `::`) into typed Arrow tables, with errors that name file, line and field.

pyarrow's CSV reader is fast but reports bad values by column and row index, not by line, and it loses
line numbers once it skips a malformed row. This module (our own; no library does it) keeps the fast
multi-threaded read for clean files and pays for a single-threaded re-read only when a row is malformed,
then maps every Arrow row back to its physical line so messages read `u.data:1234: field 'rating': ...`.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from llmrec.data.skips import SkipLog
from llmrec.errors import DataError

# "id": a string kept as is, but it must be a whole number (MovieLens ids are, by their README).
Kind = Literal["str", "id", "int", "float", "timestamp"]
OnBadLines = Literal["error", "skip"]

_INT = r"^[+-]?[0-9]+$"
_FLOAT = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_EXPECTED = {"id": "a numeric id", "int": "an integer", "float": "a number", "timestamp": "a number (timestamp)"}


@dataclass(frozen=True)
class Column:
    """One field to keep: its output name, its 0-based position in the line, and its type."""

    name: str
    index: int
    kind: Kind = "str"
    required: bool = True


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

    Policy: blank lines are skipped and counted. A line with the wrong number of fields, a missing required
    value or a value of the wrong type raises `DataError` naming the line, or with `on_bad_lines="skip"` is
    skipped and counted per reason in `skips`. Ints and timestamps come out as int64, floats as float64.
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

    typed = {}
    for col in columns:
        typed[col.name], bad = _typed(values[col.name], empty[col.name], col)
        bad &= keep
        if not bad.any():
            continue
        rows = np.flatnonzero(bad)
        if on_bad_lines == "error":
            value = values[col.name][int(rows[0])].as_py()
            problem = "missing value" if value == "" else f"expected {_EXPECTED.get(col.kind)}, got {value!r}"
            raise DataError(path, problem, line=int(line_of(rows[:1])[0]), field=col.name)
        skips.add(path.name, f"invalid_{col.name}", rows.size, int(line_of(rows[:1])[0]))
        keep &= ~bad

    if not keep.any():
        raise DataError(path, "no data rows (the file is empty or every line was skipped)")
    if not keep.all():
        mask = pa.array(keep)
        typed = {c.name: _typed(values[c.name].filter(mask), empty[c.name][keep], c)[0] for c in columns}
    if any(c.kind == "timestamp" for c in columns):
        typed = {c.name: _whole(typed[c.name], c, path) if c.kind == "timestamp" else typed[c.name] for c in columns}
    return pa.table(typed)


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


def _typed(values: pa.ChunkedArray, empty: np.ndarray, col: Column) -> tuple[pa.ChunkedArray | None, np.ndarray]:
    """Typed values (None if some do not parse) and the mask of bad rows (missing, or not of the kind).

    The cast is tried first because it is fast; the regexes only run to find which rows are bad.
    """
    missing = empty & col.required
    if col.kind == "str":
        return values, missing
    if empty.any():
        values = pc.if_else(pa.array(~empty), values, None)
    integral = col.kind in ("id", "int")
    try:
        cast = pc.cast(values, pa.int64() if integral else pa.float64())
        return (values if col.kind == "id" else cast), missing
    except pa.ArrowInvalid:
        ok = pc.fill_null(pc.match_substring_regex(values, _INT if integral else _FLOAT), True)
        return None, missing | ~ok.to_numpy(zero_copy_only=False)


def _whole(seconds: pa.ChunkedArray, col: Column, path: Path) -> pa.ChunkedArray:
    as_int = pc.cast(pc.floor(seconds), pa.int64())
    if pc.all(pc.equal(pc.cast(as_int, pa.float64()), seconds)).as_py() is False:
        raise DataError(path, "fractional timestamps are not supported; store whole units", field=col.name)
    return as_int


def _first(lines: np.ndarray) -> int | None:
    return int(lines[0]) if len(lines) else None
