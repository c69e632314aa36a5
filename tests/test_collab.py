"""Classic models: SASRec, BPR-MF and EASE, their folders, candidate export and evaluation."""

import json
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest
import torch

from conftest import write
from llmrec.collab import BPR, EASE, CollabConfig, CollabData, SASRec, load_collab, ndcg_at_k, top_k, train_collab
from llmrec.collab.bpr import sample_negatives
from llmrec.collab.candidates import prefix_records
from llmrec.data import PrepareConfig, PreparedDataset, prepare
from llmrec.errors import LlmrecError


def planted_dataset(root: Path, n_users: int = 40, n_items: int = 12, length: int = 9) -> PreparedDataset:
    """Every user walks the catalog in steps of +1 (m3 -> m4 -> m5 ...) from a random start: the next item
    is fully determined by the last one, while every item is about equally popular."""
    rng = np.random.default_rng(0)
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    for u in range(n_users):
        start = int(rng.integers(n_items))
        lines += [f"u{u}\tm{(start + t) % n_items}\t{100 + t}" for t in range(length)]
    items = ["item_id:token\tmovie_title:token_seq"] + [f"m{i}\tFilm {i}" for i in range(n_items)]
    write(root / "raw" / "walk.inter", "\n".join(lines) + "\n")
    write(root / "raw" / "walk.item", "\n".join(items) + "\n")
    prepare(PrepareConfig(output=str(root / "ds"), input=str(root / "raw")))
    return PreparedDataset.load(root / "ds")


@pytest.fixture
def planted(tmp_path):
    return planted_dataset(tmp_path / "walk")


def small_sasrec(**kw) -> dict:
    return {**dict(model="sasrec", dim=16, n_layers=1, n_heads=2, dropout=0.0, max_len=8, batch_size=8, lr=1e-2), **kw}


def assert_causal_and_padding_blind(model, atol: float | None = None) -> None:
    """Changing a later item never changes an earlier position's state, and left padding is invisible: the
    same items with more padding in front (beside an unpadded row) give the same states."""
    a = torch.tensor([[0, 3, 5, 7, 2, 9]])
    b = a.clone()
    b[0, 4] = 4
    ha, hb = model.hidden(a), model.hidden(b)
    torch.testing.assert_close(ha[:, :4], hb[:, :4])
    assert not torch.allclose(ha[:, 4:], hb[:, 4:])
    padded = model.hidden(torch.tensor([[0, 0, 3, 5], [1, 2, 3, 5]]))
    tolerance = {} if atol is None else {"atol": atol, "rtol": 0}
    torch.testing.assert_close(padded[0, 2:], model.hidden(torch.tensor([[3, 5]]))[0], **tolerance)
    assert torch.isfinite(padded).all()  # padding positions attend to nothing real yet stay finite


def test_sasrec_is_causal():
    torch.manual_seed(0)
    assert_causal_and_padding_blind(SASRec(n_items=10, max_len=6, dim=8, n_layers=2, n_heads=2).eval())


def test_sasrec_prefix_scores_see_only_the_prefix():
    """Row t of prefix_scores never changes when any item after t changes, across window boundaries too."""
    torch.manual_seed(0)
    model = SASRec(n_items=10, max_len=4, dim=8, n_layers=1, n_heads=2).eval()
    seq = np.array([1, 4, 2, 7, 3, 0, 5, 8, 6])  # longer than max_len: scored window by window, as trained
    rows = model.prefix_scores(seq)
    assert rows.shape == (9, 10)
    for t in range(len(seq) - 1):
        changed = seq.copy()
        changed[t + 1 :] = 9
        torch.testing.assert_close(model.prefix_scores(changed)[: t + 1], rows[: t + 1])
        assert not torch.allclose(model.prefix_scores(changed)[t + 1], rows[t + 1])


def test_sasrec_learns_a_planted_sequence_and_beats_most_popular(planted, tmp_path):
    result = train_collab(CollabConfig(data=str(planted.path), output=str(tmp_path / "m"), epochs=30, patience=30,
                                       **small_sasrec()))
    losses = [h["loss"] for h in result["history"]]
    assert losses[-1] < 0.5 * losses[0]
    ndcg = result["valid_metrics"]["ndcg@10"]["value"]
    assert ndcg > 0.9  # the next item is determined by the last one
    from llmrec.evaluation.baselines import baseline_rankings
    from llmrec.evaluation.rank import RankEvalConfig, evaluate

    popular = evaluate(planted, baseline_rankings(planted, "valid", 10, "most_popular"),
                       RankEvalConfig(data="", output="", split="valid", ks=[10]))
    assert ndcg > popular.metrics["ndcg@10"]["value"] + 0.3


def test_ease_equals_the_closed_form_by_hand():
    """Steck 2019, Eq. 8 on a 3-user, 5-item toy with lambda = 1, against numpy."""
    train = [np.array([0, 1, 2]), np.array([1, 2, 3]), np.array([0, 4, 4])]  # the repeat counts once
    x = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [1, 0, 0, 0, 1]], float)
    p = np.linalg.inv(x.T @ x + np.eye(5))
    b = np.eye(5) - p / np.diag(p)  # B = I - P diagMat(1 / diag(P))
    model = EASE(5, lam=1.0).fit(train)
    np.testing.assert_allclose(model.weights.numpy(), b, atol=1e-6)
    assert np.allclose(np.diag(model.weights.numpy()), 0)
    np.testing.assert_allclose(model.score(["a"], [np.array([0, 1])])[0].numpy(), x[0, :] @ b - b[2], atol=1e-6)
    # Prefix scores are the running sums of the rows of B, a repeated item counted once.
    np.testing.assert_allclose(model.prefix_scores(np.array([0, 4, 4])).numpy(), np.stack(
        [b[0], b[0] + b[4], b[0] + b[4]]), atol=1e-6)


def test_score_items_reads_the_full_catalog_scores():
    torch.manual_seed(0)
    model = SASRec(n_items=7, max_len=4, dim=8, n_layers=1, n_heads=2).eval()
    histories = [np.array([1, 2]), np.array([5])]
    full = model.score(["a", "b"], histories)
    picked = model.score_items(["a", "b"], histories, np.array([[6, 0], [3, 3]]))
    torch.testing.assert_close(picked, torch.stack([full[0, [6, 0]], full[1, [3, 3]]]))
    assert model.encode_users(histories).shape == (2, 8)


def test_bpr_negatives_are_never_positives():
    rng = np.random.default_rng(0)
    n_items, n_users = 6, 50
    train = [rng.choice(n_items, size=5, replace=False) for _ in range(n_users)]  # 5 of 6 items positive
    model = BPR(n_items, [f"u{u}" for u in range(n_users)], dim=4)
    for users, items, negatives in model.batches(train, rng, batch_size=64):
        for u, i, j in zip(users.tolist(), items.tolist(), negatives.tolist()):
            assert i in train[u] and j not in train[u]
    users = np.repeat(np.arange(n_users), 5)
    keys = np.unique(users * n_items + np.concatenate(train))
    neg = sample_negatives(users, keys, n_items, rng)
    assert all(j not in train[u] for u, j in zip(users, neg))


def test_resume_after_a_crash_gives_the_same_weights(planted, tmp_path, monkeypatch):
    import llmrec.collab.train as train_module

    straight = tmp_path / "straight"
    train_collab(CollabConfig(data=str(planted.path), output=str(straight), epochs=4, patience=10, **small_sasrec(
        dropout=0.3)))
    crashed = tmp_path / "crashed"
    calls = {"n": 0}
    real = train_module.ndcg_at_k

    def crash_in_epoch_3(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(train_module, "ndcg_at_k", crash_in_epoch_3)
    config = CollabConfig(data=str(planted.path), output=str(crashed), epochs=4, patience=10, **small_sasrec(
        dropout=0.3))
    with pytest.raises(KeyboardInterrupt):
        train_collab(config)
    state_file = crashed / "checkpoint" / "state.json"
    saved = json.loads(state_file.read_text())
    assert saved["epoch"] == 2 and saved["seconds"] >= 0
    assert not (crashed / "llmrec.json").exists()
    state_file.write_text(json.dumps({**saved, "seconds": 1000.0}))  # as if the first two epochs took 1000 s
    monkeypatch.setattr(train_module, "ndcg_at_k", real)
    start = time.perf_counter()
    result = train_collab(config)
    assert 1000 <= result["train_seconds"] <= 1000 + time.perf_counter() - start + 0.1  # earlier epochs count
    assert not (crashed / "checkpoint").exists()  # the finished folder replaced the checkpoint
    assert [h["loss"] for h in result["history"]] == [
        h["loss"] for h in json.loads((straight / "llmrec.json").read_text())["result"]["history"]]
    for name, weight in load_collab(straight).state_dict().items():
        torch.testing.assert_close(load_collab(crashed).state_dict()[name], weight, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["ease", "sasrec", "bpr"])
def test_folder_round_trip_and_candidates(planted, tmp_path, kind):
    extra = small_sasrec(epochs=3) if kind == "sasrec" else {"model": kind, "epochs": 3, "dim": 8}
    out = tmp_path / kind
    result = train_collab(CollabConfig(data=str(planted.path), output=str(out), candidates=5, **extra))
    assert {"model.safetensors", "config.json", "llmrec.json", "README.md", "candidates-valid.jsonl",
            "candidates-test.jsonl"} <= {p.name for p in out.iterdir()}
    assert "Validation" in (out / "README.md").read_text()
    data = CollabData.from_dataset(planted)
    valid = data.split(planted, "valid")
    assert ndcg_at_k(load_collab(out, planted), valid) == pytest.approx(result["valid_metrics"]["ndcg@10"]["value"])
    for split in ("valid", "test"):
        records = [json.loads(line) for line in (out / f"candidates-{split}.jsonl").read_text().splitlines()]
        history = {u: {data.item_ids[i] for i in h} for u, h in zip(*_histories(planted, data, split))}
        assert len(records) == len(history)
        assert all(len(r["ranked_items"]) == min(5, 12 - len(history[r["user_id"]])) for r in records)
        assert all(not set(r["ranked_items"]) & history[r["user_id"]] for r in records)
        hits = sum(r["target_item_id"] in r["ranked_items"] for r in records)
        assert result["candidates"][split]["target_in_candidates"] == hits / len(records)
    if kind == "bpr":  # BPR has user embeddings, not a history encoder: no prefix candidates
        assert "train" not in result["candidates"] and not (out / "candidates-train.jsonl").exists()
        with pytest.raises(LlmrecError, match="by history prefix"):
            prefix_records(load_collab(out), data, 5)
    else:
        records = [json.loads(line) for line in (out / "candidates-train.jsonl").read_text().splitlines()]
        by_user = dict(zip(data.users, data.train))
        assert len(records) == sum(len(s) - 1 for s in data.train)
        for r in records:
            seq = [data.item_ids[i] for i in by_user[r["user_id"]]]
            assert r["target_item_id"] == seq[r["position"]]
            assert not set(r["ranked_items"]) & set(seq[: r["position"]])  # no item of the prefix


def _histories(dataset, data, split):
    h = data.split(dataset, split)
    return h.users, h.histories


def test_eval_rank_scores_a_collab_folder(planted, tmp_path):
    from llmrec.evaluation.rank import main as eval_main

    out = tmp_path / "ease"
    train_collab(CollabConfig(data=str(planted.path), output=str(out), model="ease", lambdas=[1.0]))
    eval_main(["--checkpoint", str(out), "--data", str(planted.path), "--output", str(tmp_path / "report"),
               "--split", "valid", "--ks", "1", "10"])
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    stored = json.loads((out / "llmrec.json").read_text())["result"]["valid_metrics"]
    assert metrics["ndcg@10"]["value"] == pytest.approx(stored["ndcg@10"]["value"])
    assert metrics["users_evaluated"] == 40 and metrics["hallucination_rate"] == 0


def test_bad_input_fails_clearly_and_writes_nothing(planted, tmp_path, toy_dataset, monkeypatch):
    out = tmp_path / "m"
    with pytest.raises(LlmrecError, match="divisible"):
        train_collab(CollabConfig(data=str(planted.path), output=str(out), model="sasrec", dim=15, n_heads=2))
    train_collab(CollabConfig(data=str(planted.path), output=str(out), model="ease", lambdas=[1.0]))
    with pytest.raises(LlmrecError, match="another catalog"):
        load_collab(out, toy_dataset)
    with pytest.raises(LlmrecError, match="already holds"):
        train_collab(CollabConfig(data=str(planted.path), output=str(out), model="ease"))

    import llmrec.collab.sasrec as sasrec_module

    monkeypatch.setattr(sasrec_module.SASRec, "loss", lambda self, *b: torch.tensor(float("nan")))
    with pytest.raises(LlmrecError, match="loss is nan at epoch 1, step 1"):
        train_collab(CollabConfig(data=str(planted.path), output=str(tmp_path / "nan"), **small_sasrec()))
    assert not (tmp_path / "nan").exists()


def test_empty_training_split_and_cli_errors(tmp_path):
    import subprocess
    import sys

    write(tmp_path / "raw" / "one.inter", "user_id:token\titem_id:token\ttimestamp:float\nu1\ti1\t1\n")
    write(tmp_path / "raw" / "one.item", "item_id:token\tmovie_title:token_seq\ni1\tHeat\n")
    prepare(PrepareConfig(output=str(tmp_path / "ds"), input=str(tmp_path / "raw")))  # one user, train only
    run = [sys.executable, "-m", "llmrec.cli", "train", "collab", "--data", str(tmp_path / "ds"),
           "--output", str(tmp_path / "m")]
    proc = subprocess.run(run + ["--model", "ease"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "the valid split is empty" in proc.stderr
    assert not (tmp_path / "m").exists()
    proc = subprocess.run(run + ["--model", "knn"], capture_output=True, text=True)
    assert proc.returncode == 2 and "invalid choice: 'knn'" in proc.stderr
    ds = PreparedDataset.load(tmp_path / "ds")
    ds.interactions = ds.interactions.filter(pc.equal(ds.interactions["split"], "test"))  # nothing to train on
    with pytest.raises(LlmrecError, match="training split is empty"):
        CollabData.from_dataset(ds)


def test_prompt_builders_take_exported_candidates(planted, tmp_path):
    from llmrec.prompts.build import PromptBuildConfig, build_prompt_datasets

    model = tmp_path / "ease"
    train_collab(CollabConfig(data=str(planted.path), output=str(model), model="ease", lambdas=[1.0], candidates=4))
    files = {s: {(r["user_id"], r.get("position")): r for r in map(json.loads, (
        model / f"candidates-{s}.jsonl").read_text().splitlines())} for s in ("train", "valid", "test")}
    dd = build_prompt_datasets(PromptBuildConfig(data=str(planted.path), families=["candidates", "rerank"],
                                                 item_format="title", n_candidates=3, candidates_from=str(model)))
    data = CollabData.from_dataset(planted)
    by_user = {u: [data.item_ids[i] for i in s] for u, s in zip(data.users, data.train)}
    for row in dd["train"]:
        position = by_user[row["user_id"]].index(row["target_item_id"])  # each item once per walk
        given = files["train"][(row["user_id"], position)]["ranked_items"][:3]
        expected = given if row["target_item_id"] in given else [*given[:2], row["target_item_id"]]
        assert sorted(row["candidate_item_ids"]) == sorted(expected)
    for split in ("valid", "test"):  # the retriever's list as it is: the target may be missing
        for row in dd[split]:
            assert sorted(row["candidate_item_ids"]) == sorted(files[split][(row["user_id"], None)]["ranked_items"][:3])
    assert {r["family"] for r in dd["train"]} == {"candidates", "rerank"}
    (model / "candidates-valid.jsonl").write_text("")
    with pytest.raises(LlmrecError, match="no valid candidates"):
        build_prompt_datasets(PromptBuildConfig(data=str(planted.path), families=["candidates"],
                                                candidates_from=str(model)))


def test_ease_with_side_information_equals_collective_ease_by_hand():
    """Jeunen et al. 2020: G = X^T X + alpha S S^T + lambda I, then Steck's Eq. 8; alpha 0 is plain EASE."""
    train = [np.array([0, 1, 2]), np.array([1, 2, 3]), np.array([0, 4])]
    x = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [1, 0, 0, 0, 1]], float)
    side = np.array([[1, 0], [0, 1], [1, 1], [0, 0], [-1, 2]], float)
    p = np.linalg.inv(x.T @ x + 3.0 * side @ side.T + np.eye(5))
    np.testing.assert_allclose(EASE(5, lam=1.0, side_weight=3.0).fit(train, side).weights.numpy(),
                               np.eye(5) - p / np.diag(p), atol=1e-5)
    torch.testing.assert_close(EASE(5, lam=1.0, side_weight=0.0).fit(train, side).weights,
                               EASE(5, lam=1.0).fit(train).weights)


def test_pca_init_keeps_the_main_direction_at_the_model_scale():
    from llmrec.collab.text_init import centred_unit_rows, pca_init

    t = np.linspace(-1, 1, 6)
    vectors = np.stack([t, 2 * t, np.zeros(6)], 1)  # rank one: every item on one line
    out = pca_init(vectors, dim=4, std=0.02)  # (6, 4): only 3 components exist
    assert out.shape == (6, 4) and np.allclose(out[:, 3], 0) and np.allclose(out[:, 1:], 0, atol=1e-6)
    assert abs(np.corrcoef(out[:, 0], t)[0, 1]) == pytest.approx(1.0)
    assert out.std() == pytest.approx(0.02, rel=1e-4)
    unit = centred_unit_rows(np.array([[3.0, 1.0], [1.0, 1.0]]))  # mean (2, 1): rows (1, 0) and (-1, 0)
    np.testing.assert_allclose(unit, [[1.0, 0.0], [-1.0, 0.0]])


def test_text_encoder_initialises_sasrec_items_and_enters_ease(planted, tmp_path, monkeypatch):
    """The item rows start from the PCA of the encoder's vectors (SASRec's padding row untouched), and EASE
    tries every (lambda, alpha) pair with the text Gram term."""
    import llmrec.collab.train as collab_train

    vectors = np.random.default_rng(0).normal(size=(12, 5)).astype(np.float32)
    monkeypatch.setattr(collab_train, "catalog_text_vectors", lambda dataset, model: vectors)
    model = SASRec(n_items=12, dim=8, n_layers=1, n_heads=2)
    pad, std = model.item_emb.weight[0].detach().clone(), model.item_emb.weight[1:].std().item()
    collab_train.init_item_embeddings(model, vectors, seed=0)
    from llmrec.collab.text_init import pca_init

    np.testing.assert_allclose(model.item_emb.weight[1:].detach().numpy(), pca_init(vectors, 8, std), atol=1e-7)
    torch.testing.assert_close(model.item_emb.weight[0].detach(), pad)
    # Through train_collab: with a vanishing learning rate the trained rows are still the PCA init (up to scale).
    for kind, extra in (("sasrec", small_sasrec()), ("bpr", {"dim": 8})):
        out = tmp_path / kind
        train_collab(CollabConfig(data=str(planted.path), output=str(out), text_encoder="fake", epochs=1,
                                  **{**extra, "model": kind, "lr": 1e-12}))
        rows = load_collab(out).item_emb.weight.detach().numpy()[1 if kind == "sasrec" else 0 :]
        np.testing.assert_allclose(rows / rows.std(), pca_init(vectors, rows.shape[1], 1.0), atol=1e-4)
    result = train_collab(CollabConfig(data=str(planted.path), output=str(tmp_path / "e"), model="ease",
                                       lambdas=[1.0, 10.0], text_encoder="fake", text_weights=[0.0, 5.0]))
    assert [(h["lambda"], h["text_weight"]) for h in result["history"]] == [(1, 0), (1, 5), (10, 0), (10, 5)]
    assert load_collab(tmp_path / "e").side_weight == result["text_weight"]
    # Each grid point is collective EASE over the centred, unit-length text vectors, fitted by hand here.
    from llmrec.collab.text_init import centred_unit_rows

    data = CollabData.from_dataset(planted)
    valid, side = data.split(planted, "valid"), centred_unit_rows(vectors)
    for h in result["history"]:
        by_hand = EASE(12, lam=h["lambda"], side_weight=h["text_weight"]).fit(data.train, side)
        assert h["valid_ndcg@10"] == round(ndcg_at_k(by_hand, valid, 10), 5)
    assert len({h["valid_ndcg@10"] for h in result["history"]}) > 1  # alpha and lambda change the model
    assert "Item text encoder:** fake" in (tmp_path / "e" / "README.md").read_text()


def test_fused_model_weight_zero_is_the_base_ranking_and_the_weight_is_chosen_on_valid(planted, tmp_path):
    ease, sasrec = tmp_path / "ease", tmp_path / "sasrec"
    train_collab(CollabConfig(data=str(planted.path), output=str(ease), model="ease", lambdas=[1.0]))
    train_collab(CollabConfig(data=str(planted.path), output=str(sasrec), epochs=2, **small_sasrec()))
    out = tmp_path / "fused"
    result = train_collab(CollabConfig(data=str(planted.path), output=str(out), model="fused",
                                       members=[str(ease), str(sasrec)], fusion_weights=[0.0, 1.0, 3.0]))
    values = {h["weight"]: h["valid_ndcg@10"] for h in result["history"]}
    assert result["weight"] == max(values, key=lambda w: (values[w], -w))
    data = CollabData.from_dataset(planted)
    valid = data.split(planted, "valid")
    fused = load_collab(out, planted)
    assert fused.weight == result["weight"] and ndcg_at_k(fused, valid) == pytest.approx(values[result["weight"]])
    fused.weight = 0.0
    base_items, _ = top_k(load_collab(ease), valid.users, valid.histories, 12)
    fused_items, _ = top_k(fused, valid.users, valid.histories, 12)
    np.testing.assert_array_equal(fused_items, base_items)  # weight 0: the first member's ranking exactly
    with pytest.raises(LlmrecError, match="two --members"):
        train_collab(CollabConfig(data=str(planted.path), output=str(tmp_path / "bad"), model="fused",
                                  members=[str(ease)]))
