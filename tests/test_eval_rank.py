"""`llmrec eval rank`: external rankings and baselines scored into a report folder."""

import json

import pytest

from llmrec.data import PrepareConfig, prepare
from llmrec.errors import DataError
from llmrec.errors import LlmrecError
from llmrec.evaluation.compare import compare_reports
from llmrec.evaluation.rank import RankEvalConfig, evaluate, load_rankings, main

from conftest import write


@pytest.fixture
def dataset(toy_dataset):
    return toy_dataset  # test targets: u1 -> i4, u2 -> i2


def config(**kw):
    return RankEvalConfig(data="", output="", ks=[1, 2], n_bootstrap=50, **kw)


def test_scores_messy_rankings_as_documented(dataset):
    records = [
        # u1: a history item (i1) is removed, then the target i4 sits at rank 1.
        {"user_id": "u1", "ranked_items": ["i1", "i4", "i4", "ghost"]},
        # u9 is not a test user: counted, ignored. u2 has no list: a miss, still averaged.
        {"user_id": "u9", "ranked_items": ["i2"]},
    ]
    result = evaluate(dataset, records, config())
    m = result.metrics
    assert m["hit@1"]["value"] == 0.5 and m["ndcg@2"]["value"] == 0.5
    assert (m["users_evaluated"], m["users_without_rankings"], m["unknown_users"]) == (2, 1, 1)
    assert (m["history_items_removed"], m["duplicate_items"], m["unknown_items"]) == (1, 1, 1)
    assert m["hallucination_rate"] == 0.5  # of u1's two listed items, "ghost" is not in the catalog
    assert result.lists[result.users.index("u1")] == ["i4", "ghost"]


def test_rankings_file_errors_name_the_line(tmp_path):
    path = write(tmp_path / "r.jsonl", '{"user_id": "u1", "ranked_items": ["i1"]}\n{"user_id": "u2"}\n')
    with pytest.raises(DataError, match=r"r\.jsonl:2: expected an object with user_id and a ranked_items list"):
        load_rankings(path)
    path = write(tmp_path / "d.jsonl", '{"user_id": "u1", "ranked_items": []}\n{"user_id": "u1", "ranked_items": []}\n')
    with pytest.raises(DataError, match=r"d\.jsonl:2: field 'user_id': user 'u1' appears twice"):
        load_rankings(path)


def test_cli_writes_a_report_folder(dataset, tmp_path):
    rankings = write(
        tmp_path / "r.jsonl",
        '{"user_id": "u1", "ranked_items": ["i4"]}\n{"user_id": "u2", "ranked_items": ["i4", "i2"]}\n',
    )
    out = tmp_path / "report"
    main(["--rankings", str(rankings), "--data", str(dataset.path), "--output", str(out), "--ks", "1", "2"])
    assert sorted(p.name for p in out.iterdir()) == [
        "meta.json",
        "metrics.json",
        "metrics_at_k.png",
        "ndcg_by_history_length.png",
        "per_user.json",
        "popularity.png",
        "rankings.jsonl",
        "report.md",
    ]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["hit@1"]["value"] == 0.5 and metrics["hit@2"]["value"] == 1.0
    assert "full ranking over 4 items" in metrics["protocol"]
    assert "| ndcg |" in (out / "report.md").read_text()
    assert "novelty@2" in metrics and "| aclt |" in (out / "report.md").read_text()


def test_compare_pairs_users_of_two_reports(dataset, tmp_path):
    reports = {}
    for name, u2_list in (("a", '["i4"]'), ("b", '["i2"]')):  # only B finds u2's target
        lines = f'{{"user_id": "u1", "ranked_items": ["i4"]}}\n{{"user_id": "u2", "ranked_items": {u2_list}}}\n'
        rankings = write(tmp_path / f"{name}.jsonl", lines)
        reports[name] = tmp_path / name
        main(["--rankings", str(rankings), "--data", str(dataset.path), "--output", str(reports[name]), "--ks", "1"])
    result = compare_reports(reports["a"], reports["b"], ["hit@1"], n_resamples=200)
    assert result["n_paired_users"] == 2
    assert (result["hit@1"]["a"], result["hit@1"]["b"], result["hit@1"]["diff"]) == (0.5, 1.0, 0.5)
    assert 0 < result["hit@1"]["p_value"] <= 1  # two users cannot make a difference significant
    with pytest.raises(LlmrecError, match="not in both reports"):
        compare_reports(reports["a"], reports["b"], ["ndcg@50"])


def test_most_popular_baseline_on_ml100k(tmp_path):
    prepare(PrepareConfig(output=str(tmp_path / "ml"), dataset="ml-100k"))
    main(
        [
            "--data",
            str(tmp_path / "ml"),
            "--baseline",
            "most_popular",
            "--output",
            str(tmp_path / "r"),
            "--n_bootstrap",
            "100",
        ]
    )
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    lists = [json.loads(line) for line in (tmp_path / "r" / "rankings.jsonl").read_text().splitlines()]
    assert len(lists) == 943 and all(len(r["ranked_items"]) == 20 for r in lists)
    # Popularity beats chance by far on MovieLens: a random list of 10 hits with probability ~10/1600.
    assert metrics["hit@10"]["value"] > 0.05 and metrics["hallucination_rate"] == 0
