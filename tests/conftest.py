import gzip
import json
from pathlib import Path

import pytest

from llmrec.data.skips import SkipLog


@pytest.fixture
def skips() -> SkipLog:
    return SkipLog()


def write(path: Path, text: str | bytes) -> Path:
    """Write a small fixture file (bytes as is, text as UTF-8; `.gz` names are gzipped)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text if isinstance(text, bytes) else text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def write_jsonl(path: Path, records: list) -> Path:
    return write(path, "".join(json.dumps(r) + "\n" for r in records))


RECBOLE_INTER = """user_id:token\titem_id:token\trating:float\ttimestamp:float
u1\ti1\t5\t100
u1\ti2\t3\t200
u1\ti3\t4\t200
u1\ti4\t2\t300
u2\ti1\t4\t150
u2\ti3\t5\t160
u2\ti2\t1\t170
u3\ti2\t5\t10
"""
RECBOLE_ITEM = """item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq
i1\tToy Story\t1995\tAnimation Comedy
i2\tHeat\t1995\tAction Crime
i3\t{{ 7*7 }}\t\t
i4\tFargo\t1996\tCrime
"""


@pytest.fixture
def recbole_dir(tmp_path: Path) -> Path:
    """Three users: u1 (4 items, two tied at t=200), u2 (3 items), u3 (1 item: train only)."""
    write(tmp_path / "toy" / "toy.inter", RECBOLE_INTER)
    write(tmp_path / "toy" / "toy.item", RECBOLE_ITEM)
    return tmp_path / "toy"
