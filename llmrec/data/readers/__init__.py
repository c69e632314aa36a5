"""Readers: raw files of one source format -> `RawDataset` (canonical tables).

`read_source` picks the reader for a folder or file by what it contains, so users rarely name a format.
"""

from __future__ import annotations

from pathlib import Path

from llmrec.data.readers.amazon import read_amazon
from llmrec.data.readers.movielens import read_movielens
from llmrec.data.readers.recbole import read_recbole
from llmrec.data.schema import RawDataset
from llmrec.data.skips import SkipLog
from llmrec.errors import LlmrecError

FORMATS = ("recbole", "movielens", "amazon")


def detect_format(path: Path) -> str:
    if path.is_dir():
        if list(path.glob("*.inter")):
            return "recbole"
        if any((path / f).exists() for f in ("u.data", "ratings.dat", "ratings.csv")):
            return "movielens"
        raise LlmrecError(
            f"{path}: cannot tell the format: expected RecBole atomic files (*.inter) or MovieLens files "
            "(u.data, ratings.dat or ratings.csv); pass --format"
        )
    if path.name.endswith((".json", ".jsonl", ".json.gz", ".jsonl.gz")):
        return "amazon"
    raise LlmrecError(f"{path}: cannot tell the format from the name; pass --format ({', '.join(FORMATS)})")


def read_source(
    path: str | Path,
    *,
    format: str | None = None,
    meta: str | Path | None = None,
    encoding: str | None = None,
    on_bad_lines: str = "error",
    skips: SkipLog,
) -> RawDataset:
    path = Path(path)
    if not path.exists():
        raise LlmrecError(f"{path}: not found")
    format = format or detect_format(path)
    if format == "recbole":
        return read_recbole(path, encoding=encoding, on_bad_lines=on_bad_lines, skips=skips)
    if format == "movielens":
        return read_movielens(path, encoding=encoding, on_bad_lines=on_bad_lines, skips=skips)
    if format == "amazon":
        if meta is None:
            raise LlmrecError(f"{path}: Amazon reviews need their metadata file for titles: pass --meta")
        return read_amazon(path, Path(meta), on_bad_lines=on_bad_lines, skips=skips)
    raise LlmrecError(f"unknown format {format!r}; valid formats: {', '.join(FORMATS)}")
