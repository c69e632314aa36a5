"""Prompt families and dataset builders: every template renders, no leakage, TRL-ready rows."""

import json

import pyarrow as pa
import pytest

from llmrec.data import PreparedDataset
from llmrec.errors import LlmrecError
from llmrec.indexing.build import IndexBuildConfig, build_index
from llmrec.prompts.build import PromptBuildConfig, build_prompt_datasets, main
from llmrec.prompts.templates import load_family, shipped_families

from conftest import synthetic_dataset, tiny_model, write, write_jsonl


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    ds = synthetic_dataset(tmp_path_factory.mktemp("syn"), n_users=12, n_items=30)
    reviews = [f"review {i}" for i in range(ds.interactions.num_rows)]  # as Amazon data would have
    return PreparedDataset(ds.path, ds.items, ds.interactions.append_column("review", pa.array(reviews)),
                           ds.stats, ds.meta, ds.protocol)


@pytest.fixture(scope="module")
def index(syn):
    return build_index(IndexBuildConfig(data="", output="", method="rqkmeans", levels=2, codebook_size=4), syn)


def build(ds, index=None, **kw):
    return build_prompt_datasets(PromptBuildConfig(data=str(ds.path), **kw), ds, index)


def test_shipped_families_outnumber_p5():
    names = shipped_families()
    assert {"sequential", "candidates", "preference", "rating", "explanation", "alignment", "zeroshot"} <= set(names)
    assert sum(len(load_family(n).templates) for n in names) >= 47  # P5: 47 templates over 5 families
    assert all(load_family(n).pick(seen=False) for n in names)  # each has held-out templates


def test_every_shipped_template_renders(syn, index):
    for name in shipped_families():
        for t in load_family(name).templates:
            if name == "alignment":  # one row per item, training only: render directly
                prompt, target = t.render({"item_title": "Film 1 (1991)", "item_index": index.tokens[1],
                                           "item_text": "Film 1 (1991). Genres: Comedy"})
            elif name == "rerank":  # candidates come from another recommender (tests/test_collab.py builds them)
                prompt, target = t.render({"user_id": "u1", "rated_history": [{"item": "Film 1", "rating": "4"}],
                                           "history": ["Film 1"], "candidates": ["Film 2", "Film 3"],
                                           "n_candidates": 2, "k": 2, "target": "Film 2"})
                with pytest.raises(LlmrecError, match="--candidates_from"):
                    build(syn, index, families=[name])
            else:
                row = build(syn, index, families=[name], eval_template=t.id, max_eval_users=2)["test"][0]
                assert row["template_id"] == t.id
                prompt, target = row["prompt"][-1]["content"], row["completion"][0]["content"]
            assert prompt and target and "{{" not in prompt + target and "{%" not in prompt


def test_training_rows_never_target_valid_or_test_items(syn):
    dd = build(syn, families=["sequential", "candidates", "rating"])
    held_out = {(r["user_id"], r["item_id"]) for r in syn.interactions.to_pylist() if r["split"] != "train"}
    train = dd["train"]
    assert len(train) > 0
    assert not held_out & set(zip(train["user_id"], train["target_item_id"]))
    for hist, target in zip(train["history_item_ids"], train["target_item_id"]):
        assert target not in hist
    test = dd["test"]
    assert len(test) == len(set(test["user_id"])) == 12  # one row per user
    truth = {(r["user_id"], r["item_id"]) for r in syn.interactions.to_pylist() if r["split"] == "test"}
    assert set(zip(test["user_id"], test["target_item_id"])) == truth


def test_windows_show_the_most_recent_history_in_order(syn):
    dd = build(syn, max_history=3)
    inter = [r for r in syn.interactions.to_pylist() if r["user_id"] == dd["test"][0]["user_id"]]
    row = dd["test"][0]
    assert row["history_item_ids"] == [r["item_id"] for r in inter[-4:-1]]  # train + valid, last 3
    titles = dict(zip(syn.items["item_id"].to_pylist(), syn.items["title"].to_pylist()))
    assert row["completion"][0]["content"].startswith(titles[row["target_item_id"]])


def test_titles_are_sandboxed_text(toy_dataset):
    dd = build(toy_dataset, families=["sequential"], item_format="title")
    texts = " ".join(m["content"] for d in dd.values() for rows in (d["prompt"], d["completion"]) for r in rows
                     for m in r)
    assert "{{ 7*7 }}" in texts and "49" not in texts


def test_candidates_hold_the_target_and_unseen_negatives(syn):
    dd = build(syn, families=["candidates"], n_candidates=5)
    for row in dd["train"]:
        assert len(row["candidate_item_ids"]) == 5 == len(set(row["candidate_item_ids"]))
        assert row["target_item_id"] in row["candidate_item_ids"]
        assert not set(row["candidate_item_ids"]) - {row["target_item_id"]} & set(row["history_item_ids"])


def test_preference_format_has_chosen_and_rejected(syn, index):
    dd = build(syn, index, format="preference", n_negatives=3)
    row = dd["train"][0]
    assert row["chosen"] == row["completion"]
    assert len(row["rejected_list"]) == 3 and row["rejected"][0]["content"] == row["rejected_list"][0]
    assert row["chosen"][0]["content"] not in row["rejected_list"]
    assert all(t.startswith("<a_") for t in row["rejected_list"])


def test_mixture_weights_scale_each_family(syn, index):
    one = build(syn, index, families=["sequential", "alignment"], weights=[1.0, 1.0])["train"]["family"]
    mix = build(syn, index, families=["sequential", "alignment"], weights=[0.5, 2.0])["train"]["family"]
    n_items = syn.items.num_rows
    assert one.count("alignment") == n_items and mix.count("alignment") == 2 * n_items
    assert mix.count("sequential") == round(one.count("sequential") * 0.5)


def test_long_prompts_drop_oldest_history_never_the_target(syn, smollm2_tokenizer):
    full = build(syn)["test"][0]
    cut = build_prompt_datasets(PromptBuildConfig(data="", max_prompt_tokens=70), syn, None,
                                smollm2_tokenizer)["test"][0]
    assert cut["n_dropped_history"] > 0
    assert cut["history_item_ids"] == full["history_item_ids"][cut["n_dropped_history"]:]
    assert cut["completion"] == full["completion"]
    n = len(smollm2_tokenizer.apply_chat_template(cut["prompt"], add_generation_prompt=True, return_dict=False))
    assert n <= 70


def test_bad_templates_and_families_fail_at_load(tmp_path):
    bad = write(tmp_path / "mine.yaml", "task: sequential\ntemplates:\n  - id: t1\n    input: '{{ histroy }}'\n"
                "    target: '{{ target }}'\n")
    with pytest.raises(LlmrecError, match=r"mine.yaml: template t1 \(input\).*unknown field.*histroy"):
        load_family(str(bad))
    with pytest.raises(LlmrecError, match="unknown prompt family 'seqential'; shipped: alignment, candidates"):
        load_family("seqential")


def test_alignment_needs_an_index_and_explanation_needs_reviews(syn, toy_dataset):
    with pytest.raises(LlmrecError, match="alignment family needs an item index"):
        build(syn, families=["sequential", "alignment"])
    with pytest.raises(LlmrecError, match="explanation family needs review text"):
        build(toy_dataset, families=["explanation"])


def test_chat_rows_pass_through_trl_collation_with_loss_on_completion_only(syn, smollm2_tokenizer, tmp_path):
    from trl import SFTConfig, SFTTrainer

    dd = build(syn, max_history=3)
    args = SFTConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, report_to=[], max_steps=1, bf16=False)
    trainer = SFTTrainer(model=tiny_model(len(smollm2_tokenizer)), args=args, train_dataset=dd["train"],
                         processing_class=smollm2_tokenizer)
    batch = next(iter(trainer.get_train_dataloader()))
    labels = batch["labels"][0]
    answer = smollm2_tokenizer.decode(labels[labels != -100])
    targets = {r[0]["content"] for r in dd["train"]["completion"]}
    assert answer.split("<|im_end|>")[0] in targets and answer.rstrip().endswith("<|im_end|>")  # completion only
    assert (labels == -100).sum() > 10  # the prompt is masked


def test_cli_writes_arrow_and_jsonl_and_shows_examples(syn, index, tmp_path, capsys):
    index.save(tmp_path / "idx")
    main(["--data", str(syn.path), "--index", str(tmp_path / "idx"), "--families", "sequential", "alignment",
          "--output", str(tmp_path / "p")])
    out = capsys.readouterr().out
    assert "--- sequential" in out and "--- alignment" in out and "[assistant] <a_" in out
    assert {"arrow", "train.jsonl", "valid.jsonl", "test.jsonl", "stats.json", "meta.json"} <= {
        p.name for p in (tmp_path / "p").iterdir()}
    import datasets

    assert datasets.load_from_disk(str(tmp_path / "p" / "arrow"))["valid"].num_rows == 12


def test_more_candidates_than_unseen_items_is_a_clear_error(toy_dataset):
    with pytest.raises(LlmrecError, match="cannot sample 9 negatives.*lower --n_candidates"):
        build(toy_dataset, families=["candidates"], n_candidates=10)


@pytest.mark.parametrize("family", ["rating", "preference"])
def test_families_that_need_ratings_refuse_implicit_feedback_alone(implicit_dataset, family):
    assert implicit_dataset.provides == frozenset()
    with pytest.raises(LlmrecError, match=f"the {family} family needs ratings, and this dataset has none "
                                          r"\(it is implicit feedback\); choose families it can fill"):
        build(implicit_dataset, families=[family])


def test_several_families_skip_and_count_those_the_data_cannot_fill(implicit_dataset, capsys):
    dd = build(implicit_dataset, families=["rating", "sequential", "zeroshot", "preference", "explanation"],
               item_format="title")
    err = capsys.readouterr().err
    assert "skipped 3 of 5 prompt families" in err
    assert "rating, preference (need ratings); explanation (needs review text)" in err
    assert "zeroshot: 3 of 6 templates left out (they need ratings)" in err
    assert set(dd["train"]["family"]) == {"sequential", "zeroshot"} and set(dd["test"]["family"]) == {"sequential"}
    zeroshot = [r for r in dd["train"] if r["family"] == "zeroshot"]
    assert zeroshot and {r["template_id"] for r in zeroshot} <= {"zs-2", "zs-4"}  # the seen ones without ratings
    text = " ".join(m["content"] for r in dd["train"] for m in r["prompt"] + r["completion"])
    assert "nan" not in text and "None" not in text
    with pytest.raises(LlmrecError, match="--eval_template zs-1 needs ratings"):
        build(implicit_dataset, families=["zeroshot"], eval_template="zs-1")
    with pytest.raises(LlmrecError, match="--eval_template rate-1 belongs to the rating family, which needs ratings"):
        build(implicit_dataset, families=["rating", "sequential"], eval_template="rate-1")


def test_explanation_family_writes_the_reviews_of_prepared_amazon_data(tmp_path):
    from llmrec.data import PrepareConfig, prepare

    def review(user, item, t, text=None):
        return {"reviewerID": user, "asin": item, "overall": 4.0, "unixReviewTime": t,
                **({"reviewText": text} if text else {})}

    # A: B1 B2 train, B3 valid, B4 test. C: B1 train, B2 valid (no review), B3 test.
    reviews = [review("A", "B1", 10, "a1"), review("A", "B2", 20, "a2"), review("A", "B3", 30, "a3"),
               review("A", "B4", 40, "a4"), review("C", "B1", 5, "c1"), review("C", "B2", 6),
               review("C", "B3", 7, "c3")]
    meta = [{"asin": f"B{i}", "title": f"Thing {i}"} for i in range(1, 5)]
    prepare(PrepareConfig(output=str(tmp_path / "ds"), input=str(write_jsonl(tmp_path / "r.json", reviews)),
                          meta=str(write_jsonl(tmp_path / "m.json", meta))))
    dd = build(PreparedDataset.load(tmp_path / "ds"), families=["explanation"])

    def completions(split):
        return {(r["user_id"], r["completion"][0]["content"]) for r in dd[split]}

    # Training rows need an earlier item (min_history 1): only A's B2. C's valid target has no review: no row.
    assert completions("train") == {("A", "a2")}
    assert completions("valid") == {("A", "a3")}
    assert completions("test") == {("A", "a4"), ("C", "c3")}


def test_readme_template_counts_match_the_shipped_families():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    table = (root / "prompts" / "README.md").read_text()
    for name in shipped_families():
        fam = load_family(name)
        held_out = sum(not t.seen for t in fam.templates)
        assert f"| {name} |" in table and f"| {len(fam.templates)} ({held_out}) |" in table.split(f"| {name} |")[1]
    total = sum(len(load_family(n).templates) for n in shipped_families())
    movielens = sum(len(load_family(n).usable(frozenset({"ratings"})).templates) for n in shipped_families())
    assert f"({total} templates" in (root / "README.md").read_text()
    assert f"MovieLens fills {movielens}" in (root / "README.md").read_text()


def test_partly_rated_data_leaves_unrated_targets_out_and_shows_no_nan(syn):
    ratings = [None if n % 3 == 0 else r for n, r in enumerate(syn.interactions["rating"].to_pylist())]
    inter = syn.interactions.set_column(syn.interactions.column_names.index("rating"), "rating",
                                        pa.array(ratings, pa.float32()))
    ds = PreparedDataset(syn.path, syn.items, inter, syn.stats, syn.meta, syn.protocol)
    dd = build(ds, families=["rating", "zeroshot"], eval_template="rate-1")
    rows = inter.to_pylist()
    first = {r["user_id"]: n for n, r in reversed(list(enumerate(rows)))}  # each user's first row
    rated_train_targets = sum(1 for n, r in enumerate(rows)
                              if r["split"] == "train" and n > first[r["user_id"]] and r["rating"] is not None)
    assert dd["train"]["family"].count("rating") == rated_train_targets
    rated_test_targets = sum(1 for r in rows if r["split"] == "test" and r["rating"] is not None)
    assert len(dd["test"]) == rated_test_targets < 12
    text = " ".join(m["content"] for d in dd.values() for r in d for m in r["prompt"] + r["completion"])
    assert "nan" not in text


def test_cli_records_what_it_left_out(implicit_dataset, tmp_path, capsys):
    main(["--data", str(implicit_dataset.path), "--families", "sequential", "rating", "--output", str(tmp_path / "p")])
    note = "skipped 1 of 2 prompt families this dataset cannot fill: rating (needs ratings)"
    assert note in capsys.readouterr().err
    stats = json.loads((tmp_path / "p" / "stats.json").read_text())
    assert stats["left_out"] == [note]
    assert stats["train"]["by_family"] == {"sequential": 1}  # u1's i2 after i1: the only training window
