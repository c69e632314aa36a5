"""`llmrec data prepare` end to end: the folder it writes, its CLI errors, and MovieLens-100K itself."""

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from llmrec.cli import COMMANDS
from llmrec.data import PrepareConfig, PreparedDataset, prepare
from llmrec.errors import LlmrecError

from conftest import write, write_jsonl

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "llmrec.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd
    )


def test_prepare_writes_a_complete_folder(recbole_dir, tmp_path):
    out = tmp_path / "ds"
    prepare(PrepareConfig(output=str(out), input=str(recbole_dir)))
    assert sorted(p.name for p in out.iterdir()) == [
        "interactions.parquet",
        "items.parquet",
        "meta.json",
        "split.json",
        "stats.json",
    ]
    stats = json.loads((out / "stats.json").read_text())
    assert (stats["n_users"], stats["n_items"], stats["n_interactions"]) == (3, 4, 8)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["source"]["format"] == "recbole" and len(meta["source"]["files"]) == 2
    ds = PreparedDataset.load(out)
    test = ds.histories("test").to_pylist()
    assert {r["user_id"]: (r["history"], r["target"]) for r in test} == {
        "u1": (["i1", "i2", "i3"], "i4"),
        "u2": (["i1", "i3"], "i2"),
    }


def test_existing_output_needs_overwrite_and_failures_leave_nothing(recbole_dir, tmp_path):
    out = tmp_path / "ds"
    prepare(PrepareConfig(output=str(out), input=str(recbole_dir)))
    with pytest.raises(LlmrecError, match="already exists"):
        prepare(PrepareConfig(output=str(out), input=str(recbole_dir)))
    write(recbole_dir / "toy.inter", "user_id:token\titem_id:token\nu1\n")
    with pytest.raises(LlmrecError):
        prepare(PrepareConfig(output=str(tmp_path / "other"), input=str(recbole_dir)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "toy"]  # no partial or temporary folder


def test_cli_success_prints_stats(recbole_dir, tmp_path):
    done = cli("data", "prepare", "--input", recbole_dir, "--output", tmp_path / "ds")
    assert done.returncode == 0, done.stderr
    assert "users 3  items 4  interactions 8" in done.stdout
    assert "1  split: users_train_only_fewer_than_3" in done.stdout


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path):
    write(tmp_path / "raw" / "x.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t2\tyesterday\n")
    write(tmp_path / "raw" / "x.item", "item_id:token\ttitle:token_seq\n2\tA\n")
    done = cli("data", "prepare", "--input", tmp_path / "raw", "--output", tmp_path / "ds")
    assert done.returncode == 2
    assert done.stderr.strip().endswith("x.inter:2: field 'timestamp': expected a number (timestamp), got 'yesterday'")
    assert "Traceback" not in done.stderr and not (tmp_path / "ds").exists()


def test_cli_unknown_config_key_is_named(recbole_dir, tmp_path):
    config = write(tmp_path / "c.yaml", f"input: {recbole_dir}\noutput: {tmp_path / 'ds'}\nmin_user_interaction: 5\n")
    done = cli("data", "prepare", "--config", config)
    assert done.returncode == 2 and "min_user_interaction" in done.stderr and "Traceback" not in done.stderr


def test_cli_help_lists_commands():
    done = cli("--help")
    assert done.returncode == 0 and "llmrec data prepare" in done.stdout


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_prints_its_help(command, capsys):
    module = importlib.import_module(COMMANDS[command][0])
    with pytest.raises(SystemExit) as done:
        module.main(["--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and ("--output" in out or "--names" in out), out[-300:]


def test_script_mirrors_cli(recbole_dir, tmp_path):
    done = subprocess.run(
        [sys.executable, "data_prep/prepare.py", "--input", str(recbole_dir), "--output", str(tmp_path / "ds")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert pq.read_table(tmp_path / "ds" / "interactions.parquet").num_rows == 8


@pytest.mark.network
def test_movielens_100k(ml100k, tmp_path):
    """The real dataset, fetched once into the llmrec cache (GroupLens, else RecBole's wheel on PyPI)."""
    result = prepare(PrepareConfig(output=str(tmp_path / "ml"), dataset="ml-100k"))
    s = result.stats
    assert (s["n_users"], s["n_items"], s["n_interactions"]) == (943, 1682, 100000)
    assert s["splits"]["test"] == {"n_interactions": 943, "n_users": 943}
    assert s["splits"]["valid"] == {"n_interactions": 943, "n_users": 943}
    # RecBole's conversion stored two years that are not years ("unkonwn" for item 267, "V" for item 1412,
    # whose title ends in "(1995) (V)"); GroupLens's u.item has no malformed value.
    recbole = json.loads((ml100k / "source.json").read_text())["format"] == "recbole"
    malformed = {
        "where": "ml-100k.item",
        "reason": "malformed_release_year_stored_as_missing",
        "count": 2,
        "first_line": 268,
    }
    assert s["drops"] == ([malformed] if recbole else [])
    assert s["users_with_tied_timestamps_in_last_3"] == 599
    test = PreparedDataset.load(tmp_path / "ml").histories("test")
    user_196 = test.filter(pc.equal(test["user_id"], "196")).to_pylist()[0]
    # u.data / ml-100k.inter: user 196's latest rating is item 110 at 881252305.
    assert user_196["target"] == "110" and len(user_196["history"]) == 38


def test_amazon_review_text_survives_prepare_aligned_with_its_interaction(tmp_path):
    # Three users of two items, written out of time order: the split sorts them, each review must follow.
    reviews = [
        {"reviewerID": "A", "asin": "B2", "overall": 4.0, "unixReviewTime": 30, "reviewText": "A on mug"},
        {"reviewerID": "A", "asin": "B1", "overall": 5.0, "unixReviewTime": 10, "reviewText": "A on kettle"},
        {"reviewerID": "A", "asin": "B3", "overall": 2.0, "unixReviewTime": 20},
        {"reviewerID": "C", "asin": "B1", "overall": 3.0, "unixReviewTime": 5, "reviewText": "C on kettle"},
    ]
    meta = [{"asin": "B1", "title": "Kettle"}, {"asin": "B2", "title": "Mug"}, {"asin": "B3", "title": "Tray"}]
    r, m = write_jsonl(tmp_path / "r.json", reviews), write_jsonl(tmp_path / "m.json", meta)
    result = prepare(PrepareConfig(output=str(tmp_path / "ds"), input=str(r), meta=str(m)))
    got = PreparedDataset.load(tmp_path / "ds").interactions.select(["user_id", "item_id", "review", "split"])
    assert got.to_pylist() == [
        {"user_id": "A", "item_id": "B1", "review": "A on kettle", "split": "train"},
        {"user_id": "A", "item_id": "B3", "review": None, "split": "valid"},
        {"user_id": "A", "item_id": "B2", "review": "A on mug", "split": "test"},
        {"user_id": "C", "item_id": "B1", "review": "C on kettle", "split": "train"},
    ]
    assert result.stats["interactions_with_review"] == 3
    assert PreparedDataset.load(tmp_path / "ds").provides == {"ratings", "reviews"}


def test_malformed_optional_values_are_in_stats_json_and_listed_apart_from_drops(recbole_dir, tmp_path):
    from conftest import RECBOLE_ITEM

    from llmrec.data.prepare import format_stats

    write(recbole_dir / "toy.item", RECBOLE_ITEM.replace("\t1996\t", "\t96?\t"))  # Fargo's year, line 5
    prepare(PrepareConfig(output=str(tmp_path / "ds"), input=str(recbole_dir)))
    stats = json.loads((tmp_path / "ds" / "stats.json").read_text())
    assert stats["drops"][0] == {
        "where": "toy.item",
        "reason": "malformed_release_year_stored_as_missing",
        "count": 1,
        "first_line": 5,
    }
    assert format_stats(stats).endswith(
        "dropped:\n         1  split: users_train_only_fewer_than_3\n"
        "stored as missing (malformed optional values; their lines were kept):\n"
        "         1  toy.item: malformed_release_year_stored_as_missing"
    )
    assert PreparedDataset.load(tmp_path / "ds").items["year"].to_pylist() == [1995, 1995, None, None]
