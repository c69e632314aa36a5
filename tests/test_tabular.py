"""Delimited reading: typed columns, and errors that point at the exact line and field."""

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
