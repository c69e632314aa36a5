"""Delimited reading: typed columns, and errors that point at the exact line and field."""

import datetime as dt
import re

import pytest

from llmrec.data.tabular import Column, read_delimited
from llmrec.errors import DataError

from conftest import write

COLS = [Column("user", 0), Column("item", 1), Column("rating", 2, "float"), Column("ts", 3, "timestamp")]


def read(path, skips, **kw):
    return read_delimited(path, COLS, n_fields=4, delimiter="\t", skips=skips, **kw)


def test_reads_typed_columns(tmp_path, skips):
    t = read(write(tmp_path / "r.tsv", "1\t10\t4.5\t100\n2\t20\t3\t200\n"), skips)
    assert t.to_pydict() == {"user": ["1", "2"], "item": ["10", "20"], "rating": [4.5, 3.0], "ts": [100, 200]}
    assert str(t.schema.field("ts").type) == "int64"


def test_wrong_field_count_names_the_line(tmp_path, skips):
    path = write(tmp_path / "r.tsv", "h\th\th\th\n1\t10\t4\t100\n2\t20\t3\n")
    with pytest.raises(DataError, match=r"r\.tsv:3: expected 4 fields"):
        read(path, skips, header_lines=1)


def test_non_numeric_value_names_line_and_field(tmp_path, skips):
    path = write(tmp_path / "r.tsv", "1\t10\t4\t100\n2\t20\tfive\t200\n")
    with pytest.raises(DataError, match=r"r\.tsv:2: field 'rating': expected a number, got 'five'"):
        read(path, skips)


def test_skip_mode_counts_and_keeps_line_numbers_right(tmp_path, skips):
    # Line 2 has too few fields and line 4 is blank; the bad timestamp on line 5 must still be called line 5.
    path = write(tmp_path / "r.tsv", "1\t10\t4\t100\n2\t20\n3\t30\t3\t300\n\n4\t40\t2\tnoon\n5\t50\t1\t500\n")
    t = read(path, skips, on_bad_lines="skip")
    assert t["user"].to_pylist() == ["1", "3", "5"]
    got = {e["reason"]: (e["count"], e.get("first_line")) for e in skips.as_list()}
    assert got == {"wrong_field_count": (1, 2), "blank_line": (1, 4), "invalid_ts": (1, 5)}


def test_missing_required_value(tmp_path, skips):
    with pytest.raises(DataError, match=r":1: field 'user': missing value"):
        read(write(tmp_path / "r.tsv", "\t10\t4\t100\n"), skips)


def test_bad_encoding_names_line_and_suggests_encoding(tmp_path, skips):
    path = write(tmp_path / "r.tsv", b"1\t10\t4\t100\n2\tCaf\xe9\t4\t100\n")
    with pytest.raises(DataError, match=r"r\.tsv:2: not valid utf-8 \(byte 0xe9.*--encoding"):
        read(path, skips)
    assert read(path, skips, encoding="latin-1")["item"].to_pylist() == ["10", "Café"]


def test_empty_file(tmp_path, skips):
    with pytest.raises(DataError, match="empty file"):
        read(write(tmp_path / "r.tsv", ""), skips)


def test_fractional_timestamps_are_rejected(tmp_path, skips):
    with pytest.raises(DataError, match="fractional timestamps"):
        read(write(tmp_path / "r.tsv", "1\t10\t4\t100.5\n"), skips)


@pytest.mark.parametrize(
    "line, field, problem",
    [
        ("1\t10\tnan\t100", "rating", "expected a finite number, got 'nan'"),  # Arrow would parse it
        ("1\t10\t4\tinf", "ts", "expected a finite number, got 'inf'"),
        ("1\t10\t4\t1e30", "ts", "timestamp beyond the 64-bit range, got '1e30'"),
    ],
)
def test_numbers_arrow_parses_but_no_rating_or_time_is_name_line_and_field(tmp_path, skips, line, field, problem):
    path = write(tmp_path / "r.tsv", "2\t20\t3\t200\n" + line + "\n")
    with pytest.raises(DataError, match=rf"r\.tsv:2: field '{field}': {re.escape(problem)}"):
        read(path, skips)


def test_long_numeric_ids_stay_strings_and_ints_must_fit_64_bits(tmp_path, skips):
    cols = [Column("user", 0, "id"), Column("count", 1, "int")]
    path = write(tmp_path / "r.tsv", "99999999999999999999\t5\n")
    assert read_delimited(path, cols, n_fields=2, delimiter="\t", skips=skips).to_pydict() == {
        "user": ["99999999999999999999"],
        "count": [5],
    }
    path = write(tmp_path / "s.tsv", "1\t5\n2\t99999999999999999999\n")
    with pytest.raises(DataError, match=r"s\.tsv:2: field 'count': expected an integer \(64-bit\), got '9+'"):
        read_delimited(path, cols, n_fields=2, delimiter="\t", skips=skips)


def test_malformed_optional_values_are_stored_as_missing_and_counted_once_per_line(tmp_path, skips):
    cols = [
        Column("id", 0, "id"),
        Column("year", 1, "year", required=False),
        Column("date", 2, "date", required=False, label="release_date"),
        Column("f0", 3, "flag", required=False, label="flags"),
        Column("f1", 4, "flag", required=False, label="flags"),
    ]
    # Line 2: every optional value is malformed (two flags: one count); line 3: all absent, which is no error.
    path = write(tmp_path / "i.tsv", "1\t1995\t01-Jan-1995\t0\t1\n2\t95\t32-Jan-1995\tx\ty\n3\t\t\t1\t\n")
    t = read_delimited(path, cols, n_fields=5, delimiter="\t", skips=skips)
    assert t["id"].to_pylist() == ["1", "2", "3"]
    assert t["year"].to_pylist() == [1995, None, None]
    assert t["date"].to_pylist() == [dt.datetime(1995, 1, 1), None, None]
    assert (t["f0"].to_pylist(), t["f1"].to_pylist()) == ([False, None, True], [True, None, None])
    assert {e["reason"]: (e["count"], e["first_line"]) for e in skips.as_list()} == {
        "malformed_year_stored_as_missing": (1, 2),
        "malformed_release_date_stored_as_missing": (1, 2),
        "malformed_flags_stored_as_missing": (1, 2),
    }
