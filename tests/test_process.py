"""Processing: chronological leave-one-out with stable ties, dedup, k-core, positives, popularity."""

import pyarrow as pa
import pytest

from llmrec.data.process import ProcessOptions, process
from llmrec.data.readers import read_source
from llmrec.data.schema import RawDataset
from llmrec.errors import LlmrecError


def raw_from(rows, titles=None):
    """rows: (user, item, rating, timestamp) tuples in file order."""
    users, items, ratings, ts = zip(*rows)
    ids = sorted(set(items))
    titles = titles or {i: f"Title {i}" for i in ids}
    return RawDataset(
        pa.table({"user_id": users, "item_id": items, "rating": ratings, "timestamp": ts}),
        pa.table({"item_id": list(titles), "title": list(titles.values())}),
    )


def split_of(processed):
    t = processed.interactions
    return {(u, i): s for u, i, s in zip(t["user_id"].to_pylist(), t["item_id"].to_pylist(), t["split"].to_pylist())}


def test_leave_one_out_keeps_file_order_for_ties(recbole_dir, skips):
    out = process(read_source(recbole_dir, skips=skips), ProcessOptions(), skips)
    s = split_of(out)
    # u1: i2 and i3 share t=200; file order puts i2 first, so i3 is valid and i4 (t=300) is test.
    assert [s[("u1", i)] for i in ("i1", "i2", "i3", "i4")] == ["train", "train", "valid", "test"]
    assert [s[("u2", i)] for i in ("i1", "i3", "i2")] == ["train", "valid", "test"]
    assert s[("u3", "i2")] == "train"  # a single interaction cannot be split: train only, and counted
    assert {"where": "split", "reason": "users_train_only_fewer_than_3", "count": 1} in out.stats["drops"]
    assert out.stats["splits"]["test"] == {"n_interactions": 2, "n_users": 2}
    assert out.stats["users_with_tied_timestamps_in_last_3"] == 1


def test_no_test_or_valid_item_is_in_training(recbole_dir, skips):
    t = process(read_source(recbole_dir, skips=skips), ProcessOptions(), skips).interactions.to_pylist()
    train = {(r["user_id"], r["item_id"]) for r in t if r["split"] == "train"}
    held_out = {(r["user_id"], r["item_id"]) for r in t if r["split"] != "train"}
    assert held_out and not train & held_out
    last_train = {}
    for r in t:  # and every held-out interaction is later than (or tied with) the user's training ones
        if r["split"] == "train":
            last_train[r["user_id"]] = max(last_train.get(r["user_id"], 0), r["timestamp"])
    assert all(r["timestamp"] >= last_train[r["user_id"]] for r in t if r["split"] != "train")


def test_popularity_counts_training_interactions_only(recbole_dir, skips):
    items = process(read_source(recbole_dir, skips=skips), ProcessOptions(), skips).items.to_pylist()
    pop = {r["item_id"]: r["popularity"] for r in items}
    # train: u1 i1,i2; u2 i1; u3 i2. i3 and i4 appear only as valid/test targets.
    assert pop == {"i1": 2, "i2": 2, "i3": 0, "i4": 0}


def test_dedup_first_and_last(skips):
    rows = [("u", "a", 1.0, 1), ("u", "b", 2.0, 2), ("u", "a", 5.0, 3), ("u", "c", 3.0, 4)]
    first = process(raw_from(rows), ProcessOptions(dedup="first"), skips).interactions
    assert first["item_id"].to_pylist() == ["a", "b", "c"] and first["rating"].to_pylist() == [1.0, 2.0, 3.0]
    last = process(raw_from(rows), ProcessOptions(dedup="last"), skips).interactions
    assert last["item_id"].to_pylist() == ["b", "a", "c"] and last["rating"].to_pylist() == [2.0, 5.0, 3.0]
    assert process(raw_from(rows), ProcessOptions(dedup="none"), skips).interactions.num_rows == 4


def test_k_core_cascades(skips):
    rows = [
        ("u", "x", 1, 1),
        ("u", "y", 1, 2),
        ("u", "v", 1, 3),
        ("t", "x", 1, 1),
        ("t", "v", 1, 2),
        ("t", "y", 1, 3),
        ("w", "x", 1, 1),
        ("w", "z", 1, 2),
        ("w", "y", 1, 3),
        ("s", "x", 1, 1),
        ("s", "v", 1, 2),
    ]
    # users >= 3: s goes. items >= 2: z goes, which leaves w with 2 -> w goes too; x, y, v keep 2 each.
    out = process(raw_from(rows), ProcessOptions(min_user_interactions=3, min_item_interactions=2), skips)
    t = out.interactions
    assert set(t["user_id"].to_pylist()) == {"u", "t"} and set(t["item_id"].to_pylist()) == {"x", "y", "v"}
    assert {"where": "interactions", "reason": "k_core_filter", "count": 5} in out.stats["drops"]
    with pytest.raises(LlmrecError, match="no interactions left"):
        process(raw_from(rows), ProcessOptions(min_user_interactions=3, min_item_interactions=3), skips)


def test_positive_threshold(skips):
    rows = [("u", "a", 5.0, 1), ("u", "b", 2.0, 2), ("u", "c", 4.0, 3), ("u", "d", 4.5, 4)]
    out = process(raw_from(rows), ProcessOptions(positive_threshold=4), skips)
    assert out.interactions["item_id"].to_pylist() == ["a", "c", "d"]
    assert {"where": "interactions", "reason": "rating_below_4", "count": 1} in out.stats["drops"]


def test_threshold_on_implicit_data_is_an_error(skips):
    raw = raw_from([("u", "a", None, 1)])
    with pytest.raises(LlmrecError, match="needs ratings"):
        process(raw, ProcessOptions(positive_threshold=4), skips)


def test_items_without_titles_are_dropped_and_counted(skips):
    rows = [("u", "a", 1, 1), ("u", "b", 1, 2), ("u", "c", 1, 3), ("u", "d", 1, 4)]
    out = process(raw_from(rows, titles={"a": "A", "b": "", "c": "C", "d": "D"}), ProcessOptions(), skips)
    assert out.interactions["item_id"].to_pylist() == ["a", "c", "d"]
    drops = {d["reason"]: d["count"] for d in out.stats["drops"]}
    assert drops["missing_title"] == 1 and drops["item_without_titled_metadata"] == 1


def test_temporal_split(skips):
    rows = [(f"u{k % 3}", f"i{k}", 1.0, k) for k in range(10)]
    out = process(raw_from(rows), ProcessOptions(split="temporal", valid_fraction=0.2, test_fraction=0.2), skips)
    by_time = sorted(out.interactions.to_pylist(), key=lambda r: r["timestamp"])
    assert [r["split"] for r in by_time] == ["train"] * 6 + ["valid"] * 2 + ["test"] * 2
