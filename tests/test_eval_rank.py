"""`llmrec eval rank`: external rankings and baselines scored into a report folder."""

import ast
import json
from pathlib import Path

import numpy as np
import pytest

import llmrec

from llmrec.data import PrepareConfig, prepare
from llmrec.errors import DataError, LlmrecError
from llmrec.evaluation.compare import compare_reports
from llmrec.evaluation.rank import RankEvalConfig, evaluate, load_rankings, main

from conftest import write, write_jsonl


@pytest.fixture
def dataset(toy_dataset):
    return toy_dataset  # test targets: u1 -> i4, u2 -> i2


def config(**kw):
    return RankEvalConfig(**{"data": "", "output": "", "ks": [1, 2], "n_bootstrap": 50, **kw})


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
    # Training popularity: i1 2, i2 2, i3 0, i4 0, over 3 users. EPC: u1 lists i4 (novelty 1) then nothing;
    # u2 lists i4 then i2 (novelty 1 - 2/3), the second position discounted by 1/log2(3).
    d2 = 1 / np.log2(3)
    assert metrics["novelty@2"] == pytest.approx((1 / (1 + d2) + (1 + d2 / 3) / (1 + d2)) / 2)
    report = (out / "report.md").read_text()
    assert "| aclt | 1.0000 | 1.0000 |" in report  # i4 is long tail (the head is the top 20%: i1), once per list
    assert "| hit | 0.5000 [" in report


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
    # Paired differences are 0 (u1) and 1 (u2): every sign flip gives the observed |mean| 0.5, so p = 1.
    assert result["hit@1"]["p_value"] == 1.0
    with pytest.raises(LlmrecError, match="not in both reports"):
        compare_reports(reports["a"], reports["b"], ["ndcg@50"])


@pytest.mark.network
def test_most_popular_baseline_on_ml100k(ml100k, tmp_path):
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
    # 81 of the 943 test targets are among each user's 10 most popular unseen films (README's recall@10
    # 0.0859); a random list of 10 would find about 943 * 10 / 1600 = 6.
    assert metrics["hit@10"]["value"] == 81 / 943 and metrics["hallucination_rate"] == 0


def test_dataset_targets_are_scored_unless_ranking_targets_are_asked_for(dataset):
    records = [
        # The file claims u1's answer is i3 (a history item); the dataset holds out i4.
        {"user_id": "u1", "ranked_items": ["i4"], "target_item_id": "i3"},
        {"user_id": "u2", "ranked_items": ["i2"], "target_item_id": "i2"},  # agrees with the dataset
    ]
    m = evaluate(dataset, records, config()).metrics
    assert m["hit@1"]["value"] == 1.0 and m["target_mismatches"] == 1  # both dataset targets at rank 1
    opted_in = evaluate(dataset, records, config(use_ranking_targets=True))
    assert opted_in.metrics["hit@1"]["value"] == 0.5  # u1 is now scored against i3, which it never lists
    assert opted_in.targets == ["i3", "i2"] and opted_in.metrics["target_mismatches"] == 1


def test_cli_reports_target_mismatches_and_the_opt_in(dataset, tmp_path, capsys):
    rankings = write_jsonl(
        tmp_path / "r.jsonl",
        [{"user_id": "u1", "ranked_items": ["i4"], "target_item_id": "i3"}, {"user_id": "u2", "ranked_items": ["i2"]}],
    )
    args = ["--rankings", str(rankings), "--data", str(dataset.path), "--ks", "1", "--n_bootstrap", "10"]
    main([*args, "--output", str(tmp_path / "default")])
    out = capsys.readouterr().out
    assert (
        "target_item_id differs from the dataset's held-out item for 1 of 2 users: scored against the "
        "dataset's (--use_ranking_targets scores the file's)" in out
    )
    metrics = json.loads((tmp_path / "default" / "metrics.json").read_text())
    assert (metrics["hit@1"]["value"], metrics["target_mismatches"]) == (1.0, 1)
    assert "targets" not in metrics["protocol"]
    assert json.loads((tmp_path / "default" / "rankings.jsonl").read_text().splitlines()[0])["target_item_id"] == "i4"

    main([*args, "--output", str(tmp_path / "theirs"), "--use_ranking_targets", "true"])
    assert "scored against the rankings file's (--use_ranking_targets)" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "theirs" / "metrics.json").read_text())
    assert metrics["hit@1"]["value"] == 0.5
    assert metrics["protocol"].endswith("; targets from the rankings file where it names one (--use_ranking_targets)")
    with pytest.raises(LlmrecError, match="--use_ranking_targets applies to --rankings only"):
        main(
            [
                "--baseline",
                "random",
                "--data",
                str(dataset.path),
                "--output",
                str(tmp_path / "x"),
                "--use_ranking_targets",
                "true",
            ]
        )


def test_rankings_sharing_no_user_with_the_split_are_refused(dataset, tmp_path):
    other = write_jsonl(
        tmp_path / "other.jsonl", [{"user_id": "x1", "ranked_items": ["i4"]}, {"user_id": "u3", "ranked_items": ["i1"]}]
    )  # u3: train only
    with pytest.raises(DataError, match=r"other\.jsonl: none of its 2 users is a test user of .*ds \(first: 'x1'\)"):
        main(["--rankings", str(other), "--data", str(dataset.path), "--output", str(tmp_path / "r")])
    empty = write(tmp_path / "empty.jsonl", "\n")
    with pytest.raises(DataError, match=r"empty\.jsonl: no rankings in it"):
        main(["--rankings", str(empty), "--data", str(dataset.path), "--output", str(tmp_path / "r")])
    assert not (tmp_path / "r").exists()


def test_cli_prints_unknown_and_missing_users_beside_the_metrics(dataset, tmp_path, capsys):
    rankings = write_jsonl(
        tmp_path / "r.jsonl", [{"user_id": "u1", "ranked_items": ["i4"]}, {"user_id": "x1", "ranked_items": ["i2"]}]
    )
    main(["--rankings", str(rankings), "--data", str(dataset.path), "--output", str(tmp_path / "r"), "--ks", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].startswith("ndcg@1 0.5000")  # u2 has no list: a miss, averaged
    assert (
        lines[3] == "users: 2 scored, 1 of them without a list (misses); 1 in the rankings not in the test "
        "split (ignored)"
    )
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert (metrics["users_evaluated"], metrics["users_without_rankings"], metrics["unknown_users"]) == (2, 1, 1)


def test_checkpoint_scores_exactly_the_users_it_ranked(dataset, tmp_path, monkeypatch, capsys):
    import llmrec.generation.ranking as ranking

    ranked = [{"user_id": "u1", "ranked_items": ["i4"], "target_item_id": "i4"}]  # u2 was never ranked
    monkeypatch.setattr(ranking, "checkpoint_rankings", lambda config, dataset: ranked)
    args = ["--checkpoint", str(tmp_path), "--data", str(dataset.path), "--ks", "1", "--n_bootstrap", "10"]
    main([*args, "--output", str(tmp_path / "one")])
    assert capsys.readouterr().out.splitlines()[1].endswith("; 1 of the split's 2 users averaged")
    metrics = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert (metrics["users_evaluated"], metrics["hit@1"]["value"]) == (1, 1.0)  # not 0.5: u2 is not a miss

    main([*args, "--output", str(tmp_path / "sample"), "--max_users", "1"])
    assert capsys.readouterr().out.splitlines()[1].endswith("; 1 sampled users averaged")
    ranked.append({"user_id": "u2", "ranked_items": ["i4"], "target_item_id": "i2"})
    main([*args, "--output", str(tmp_path / "both")])
    assert capsys.readouterr().out.splitlines()[1].endswith("; all 2 users of the split averaged")
    assert json.loads((tmp_path / "both" / "metrics.json").read_text())["hit@1"]["value"] == 0.5


def test_checkpoint_prompts_cover_the_split_not_the_training_runs_eval_sample(dataset):
    from llmrec.evaluation.sampling import sample_positions
    from llmrec.generation.ranking import checkpoint_rows

    # As recipes/sft.py writes them into llmrec.json: training ranked only one sampled user per split.
    settings = {
        "prompts": {"data": "elsewhere", "families": ["sequential"], "item_format": "title", "max_eval_users": 1}
    }
    rows = checkpoint_rows(settings, config(data=str(dataset.path)), dataset)
    assert rows["user_id"] == ["u1", "u2"] and rows["target_item_id"] == ["i4", "i2"]
    # --max_users samples through sample_positions, as zero-shot evaluation does: seed 1 picks position 0.
    assert sample_positions(2, 1, seed=1).tolist() == [0]
    assert checkpoint_rows(settings, config(data=str(dataset.path), max_users=1, seed=1), dataset)["user_id"] == ["u1"]


def test_no_module_level_import_cycles():
    """Imports at module level (TYPE_CHECKING blocks included) form no circle; lazy ones inside functions may."""
    package = Path(llmrec.__file__).parent
    modules = {
        ".".join(p.relative_to(package.parent).with_suffix("").parts).removesuffix(".__init__"): p
        for p in package.rglob("*.py")
    }
    graph = {name: _module_level_imports(path, name, modules) for name, path in modules.items()}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        for dep in sorted(graph[name]):
            assert dep not in path, " -> ".join([*path[path.index(dep) :], dep])
            if dep not in done:
                visit(dep, [*path, dep])
        done.add(name)

    for name in sorted(graph):
        visit(name, [name])


def _module_level_imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def scan(statements: list[ast.stmt]) -> None:
        for s in statements:
            if isinstance(s, ast.Import):
                found.update(a.name for a in s.names)
            elif isinstance(s, ast.ImportFrom):
                base = s.module or ""
                if s.level:  # relative: `from . import x` in package a.b is a.b.x, `from ..c import x` is a.c.x
                    parent = package.split(".")[: len(package.split(".")) - s.level + 1]
                    base = ".".join([*parent, base] if base else parent)
                found.update([base, *(f"{base}.{a.name}" for a in s.names)])
            elif isinstance(s, (ast.If, ast.Try)):  # TYPE_CHECKING blocks, optional imports
                for block in (s.body, s.orelse, *(h.body for h in getattr(s, "handlers", []))):
                    scan(block)

    scan(ast.parse(path.read_text(encoding="utf-8")).body)
    return {m for m in found if m in modules and m != name}
