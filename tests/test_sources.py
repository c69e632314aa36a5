"""Named datasets: cache, then GroupLens, then RecBole's wheel on PyPI; every copy checksummed."""

import io
import json
import urllib.request

import pytest

from llmrec.data import sources
from llmrec.errors import DataError, LlmrecError
from llmrec.data.readers import read_source


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMREC_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def unreachable(*args, **kwargs):
    raise OSError("no route to host")


def test_falls_back_to_recbole_wheel_and_verifies_it(fresh_cache, monkeypatch, skips):
    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    folder = sources.fetch_dataset("ml-100k")
    origin = json.loads((folder / "source.json").read_text())
    assert origin["origin"] == "PyPI recbole-1.2.1-py3-none-any.whl" and origin["format"] == "recbole"
    assert origin["files"]["ml-100k.inter"] == sources.DATASETS["ml-100k"].recbole_files["ml-100k.inter"]
    assert read_source(folder, skips=skips).interactions.num_rows == 100_000
    assert sources.fetch_dataset("ml-100k") == folder  # second call: the cache, no download


def test_tampered_cache_is_refused(fresh_cache, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    folder = sources.fetch_dataset("ml-100k")
    with open(folder / "ml-100k.inter", "a") as f:
        f.write("1\t1\t5\t1\n")
    with pytest.raises(LlmrecError, match="changed since it was fetched"):
        sources.fetch_dataset("ml-100k")


def test_grouplens_download_with_wrong_checksum_is_an_error(fresh_cache, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: io.BytesIO(b"not the zip"))
    with pytest.raises(LlmrecError, match="MD5 .* does not match the published 0e33842e"):
        sources.fetch_dataset("ml-100k")
    assert not (fresh_cache / "datasets" / "ml-100k").exists()


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(LlmrecError, match="known: ml-100k, ml-1m"):
        sources.fetch_dataset("ml-5k")


def test_movielens_ids_must_be_numeric(tmp_path, skips):
    (tmp_path / "u.data").write_text("196\t242\t3\t881250949\nabc\t302\t3\t891717742\n")
    (tmp_path / "u.item").write_text("242|Kolya (1996)|24-Jan-1997||x" + "|0" * 19 + "\n")
    with pytest.raises(DataError, match=r"u\.data:2: field 'user_id': expected a numeric id, got 'abc'"):
        read_source(tmp_path, skips=skips)
