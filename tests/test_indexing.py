"""Item indices: quantisers, P5 schemes, the ItemIndex artifact, tokenizer and trie integration."""

import numpy as np
import pyarrow as pa
import pytest
import torch

from llmrec.data import PreparedDataset
from llmrec.errors import LlmrecError
from llmrec.indexing.build import METHODS, IndexBuildConfig, build_index, main
from llmrec.indexing.item_index import ItemIndex
from llmrec.indexing.quantize import codebook_stats, disambiguate, residual_kmeans, sinkhorn_assign
from llmrec.indexing.rqvae import RQVAESettings, train_rqvae

from conftest import synthetic_dataset, tiny_model


def config(method, **kw):
    return IndexBuildConfig(data="", output="", method=method, **kw)


def test_disambiguate_numbers_items_that_share_a_code():
    codes = np.array([[0, 1], [0, 1], [2, 3], [0, 1]])
    out, rate = disambiguate(codes)
    assert rate == pytest.approx(1 - 2 / 4)
    assert out[:, 2].tolist() == [0, 1, 0, 2]
    assert len({tuple(r) for r in out}) == 4
    same, rate = disambiguate(np.array([[0, 1], [1, 0]]))
    assert rate == 0.0 and same.shape == (2, 2)


def test_codebook_stats_by_hand():
    (level,) = codebook_stats(np.array([[0], [0], [1], [3]]), [4])
    assert level["codebook_usage"] == 0.75
    assert level["perplexity"] == pytest.approx(np.exp(-(0.5 * np.log(0.5) + 2 * 0.25 * np.log(0.25))))


def test_sinkhorn_spreads_points_over_codes_in_order():
    points, codes = torch.arange(8.0)[:, None], torch.tensor([0.0, 0.5, 1.0, 1.5])[:, None]
    dist = torch.cdist(points, codes) ** 2  # (8, 4): nearest-code assignment piles onto the last code
    assert dist.argmin(1).tolist() == [0, 2, 3, 3, 3, 3, 3, 3]
    assert sinkhorn_assign(dist).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_residual_kmeans_levels_reduce_error():
    x = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
    errors = []
    for levels in (1, 2, 3):
        codes, books = residual_kmeans(x, levels, 8)
        assert codes.shape == (200, levels) and books.shape == (levels, 8, 8)
        errors.append(((books[np.arange(levels)[None], codes].sum(1) - x) ** 2).mean())
    assert errors[0] > errors[1] > errors[2]


def test_rqvae_learns_and_uses_its_codebooks():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(16, 24))
    x = (centers[rng.integers(0, 16, 400)] + 0.1 * rng.normal(size=(400, 24))).astype(np.float32)
    s = RQVAESettings(levels=2, codebook_size=16, latent_dim=8, hidden_dims=(32,), epochs=60, batch_size=128)
    model, codes, mse = train_rqvae(x, s)
    assert codes.shape == (400, 2)
    assert mse < 0.5 * x.var()  # far better than predicting the mean
    assert all(lv["codebook_usage"] == 1.0 for lv in codebook_stats(codes, [16, 16]))
    assert model.decode_codes(torch.from_numpy(codes[:5])).shape == (5, 24)


def test_rqvae_gives_the_same_codes_on_every_run():
    """A catalog-sized problem (1,682 x 384, 256 codes): with threads racing in the codebooks' backward, two
    runs of the same seed used to end with different codes (and a rebuilt index with other item tokens)."""
    x = np.random.default_rng(0).normal(size=(1682, 384)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    s = RQVAESettings(levels=3, codebook_size=256, latent_dim=32, epochs=3, batch_size=1024)
    (first, codes_a, mse_a), (second, codes_b, mse_b) = train_rqvae(x, s), train_rqvae(x, s)
    assert np.array_equal(codes_a, codes_b) and mse_a == mse_b
    assert all(torch.equal(v, second.state_dict()[k]) for k, v in first.state_dict().items())
    assert not torch.are_deterministic_algorithms_enabled()  # restored for the caller


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    return synthetic_dataset(tmp_path_factory.mktemp("syn"), n_users=30, n_items=40)


@pytest.mark.parametrize("method", ["rqvae", "rqkmeans", "random", "sequential", "collaborative", "title"])
def test_every_method_builds_unique_ids_that_round_trip(syn, tmp_path, method):
    index = build_index(config(method, levels=2, codebook_size=8, epochs=20, n_clusters=4), syn)
    assert len(index.item_ids) == 40 and len(set(index.tokens)) == 40
    assert index.stats["collisions_final"] == 0
    index.save(tmp_path / "idx")
    loaded = ItemIndex.load(tmp_path / "idx")
    assert (loaded.item_ids, loaded.codes, loaded.tokens) == (index.item_ids, index.codes, index.tokens)
    assert loaded.method == method and loaded.stats == index.stats
    assert loaded.quantizer.keys() == index.quantizer.keys()
    for k in index.quantizer:
        np.testing.assert_array_equal(loaded.quantizer[k], index.quantizer[k])


SMALL_CODEBOOK = 4  # codes per level, and collaborative clusters per level


@pytest.fixture(scope="module")
def small_catalogs(tmp_path_factory):
    """Catalogs of 1, 2, codebook-size and codebook-size + 1 items, six users each."""
    sizes = (1, 2, SMALL_CODEBOOK, SMALL_CODEBOOK + 1)
    return {
        n: synthetic_dataset(tmp_path_factory.mktemp(f"small{n}"), n_users=6, n_items=n, per_user=min(n, 3))
        for n in sizes
    }


def expected_code_length(method, n_items, index):
    if method in ("rqvae", "rqkmeans"):  # 2 levels, plus the disambiguation level only after collisions
        return 2 + (index.stats["collision_rate_raw"] > 0)
    if method == "collaborative":  # one cluster level above the leaf once items outnumber the clusters
        return 1 if n_items <= SMALL_CODEBOOK else 2
    return {"random": 1, "sequential": 1, "title": 0}[method]


@pytest.mark.parametrize("n_items", [1, 2, SMALL_CODEBOOK, SMALL_CODEBOOK + 1])
@pytest.mark.parametrize("method", METHODS)
def test_small_catalogs_get_distinct_codes_of_the_expected_length(small_catalogs, method, n_items):
    settings = {"levels": 2, "codebook_size": SMALL_CODEBOOK, "n_clusters": SMALL_CODEBOOK, "epochs": 5}
    index = build_index(config(method, **settings), small_catalogs[n_items])
    assert len(index.item_ids) == n_items and len(set(index.tokens)) == n_items
    if method != "title":  # titles are told apart by their text, their codes are all empty
        assert len(set(index.codes)) == n_items
    assert {len(c) for c in index.codes} == {expected_code_length(method, n_items, index)}
    assert index.stats["collisions_final"] == 0


def test_quality_figures_that_need_more_items_are_reported_as_missing(small_catalogs, tmp_path, capsys):
    # 2 items under 4 codes: each has its own first code (no same-code pair) and fewer than 10 neighbours.
    main(
        [
            "--data",
            str(small_catalogs[2].path),
            "--method",
            "rqkmeans",
            "--levels",
            "2",
            "--codebook_size",
            "4",
            "--output",
            str(tmp_path / "idx"),
        ]
    )
    stats = ItemIndex.load(tmp_path / "idx").stats
    assert stats["distance_same_first_code"] is None and stats["code_nn_recall@10"] is None
    assert stats["distance_random_pairs"] > 0
    assert "same first code n/a" in capsys.readouterr().out


def test_semantic_ids_report_quality_and_keep_meaning(syn):
    index = build_index(config("rqkmeans", levels=2, codebook_size=8), syn)
    s = index.stats
    assert [lv["codebook_size"] for lv in s["levels"]][:2] == [8, 8]
    assert s["distance_same_first_code"] < s["distance_random_pairs"]
    assert 0 < s["code_nn_recall@10"] <= 1
    assert index.tokens[0].startswith("<a_") and index.new_tokens[0] == "<a_0>"


def test_small_codebooks_get_an_automatic_disambiguation_level(syn):
    index = build_index(config("rqkmeans", levels=1, codebook_size=2), syn)  # 2 ** 1 codes for 40 items
    assert index.stats["collision_rate_raw"] == pytest.approx(1 - 2 / 40)
    assert all(len(c) == 2 for c in index.codes) and index.stats["collisions_final"] == 0


def test_duplicate_texts_still_get_distinct_ids(syn):
    items = syn.items.set_column(1, "title", pa.array(["Same"] * 40))
    items = items.set_column(items.column_names.index("categories"), "categories", pa.array([["Drama"]] * 40))
    items = items.set_column(items.column_names.index("year"), "year", pa.array([1990] * 40, pa.int32()))
    same = PreparedDataset(syn.path, items, syn.interactions, syn.stats, syn.meta, syn.protocol)
    for method in ("rqkmeans", "title"):
        index = build_index(config(method, levels=2, codebook_size=4), same)
        assert len(set(index.tokens)) == 40 and index.stats["collision_rate_raw"] > 0.5


def test_empty_item_text_is_a_clear_error(syn):
    with pytest.raises(LlmrecError, match="render to empty text"):
        build_index(config("rqkmeans", text_template="{{ description or '' }}"), syn)
    with pytest.raises(LlmrecError, match="unknown field.*plot"):
        build_index(config("rqkmeans", text_template="{{ plot }}"), syn)


def test_sequential_numbers_come_from_training_rows_only(syn):
    index = build_index(config("sequential"), syn)
    inter = syn.interactions.to_pylist()
    train_items = {r["item_id"] for r in inter if r["split"] == "train"}
    number = {i: c[0] for i, c in zip(index.item_ids, index.codes)}
    first_user = sorted({r["user_id"] for r in inter})[0]
    first_item = next(r["item_id"] for r in inter if r["user_id"] == first_user and r["split"] == "train")
    assert number[first_item] == 1
    assert max(number[i] for i in train_items) == len(train_items)  # held-out-only items come after
    # Rewriting every valid/test row changes nothing: those rows are never read.
    moved = syn.interactions.set_column(
        1, "item_id", pa.array([r["item_id"] if r["split"] == "train" else "m0" for r in inter])
    )
    other = PreparedDataset(syn.path, syn.items, moved, syn.stats, syn.meta, syn.protocol)
    assert build_index(config("sequential"), other).codes == index.codes


def test_index_for_another_catalog_is_refused(syn, toy_dataset):
    index = build_index(config("random"), syn)
    index.check_dataset(syn.items)
    with pytest.raises(LlmrecError, match="built for another catalog"):
        index.check_dataset(toy_dataset.items)


def test_tokenizer_gets_exactly_the_new_tokens_and_the_trie_spells_every_item(syn, smollm2_tokenizer):
    from copy import deepcopy

    tok = deepcopy(smollm2_tokenizer)
    index = build_index(config("rqkmeans", levels=2, codebook_size=8), syn)
    with pytest.raises(LlmrecError, match="tokenizer lacks"):
        index.token_ids(tok)
    model = tiny_model(len(tok))
    before = len(tok)
    old = model.get_input_embeddings().weight.detach().clone()
    assert index.add_to_tokenizer(tok, model) == len(index.new_tokens)
    assert len(tok) == before + len(index.new_tokens)
    assert tok.convert_ids_to_tokens(list(range(before, len(tok)))) == index.new_tokens
    emb = model.get_input_embeddings().weight.detach()
    assert emb.shape[0] == len(tok)
    torch.testing.assert_close(emb[:before], old)
    assert (emb[before:].mean(0) - old.mean(0)).abs().max() < 0.1  # new rows drawn around the old mean
    ids = index.token_ids(tok)
    assert all(len(seq) == len(index.codes[0]) + 1 and seq[-1] == tok.eos_token_id for seq in ids)
    trie = index.trie(tok)
    states = trie.walk(torch.tensor(ids))
    assert trie.item_at(states).tolist() == list(range(40))  # every item reachable, in order
    wrong = torch.tensor([[ids[0][0], tok.eos_token_id]])  # a first-level code alone is no item
    assert trie.item_at(trie.walk(wrong)).tolist() == [-1]


def test_cli_writes_an_index_folder(syn, tmp_path, capsys):
    main(
        [
            "--data",
            str(syn.path),
            "--method",
            "rqkmeans",
            "--levels",
            "2",
            "--codebook_size",
            "8",
            "--output",
            str(tmp_path / "idx"),
        ]
    )
    out = capsys.readouterr().out
    assert "final collisions 0" in out and "level 0: 8 codes" in out
    assert {p.name for p in (tmp_path / "idx").iterdir()} == {
        "items.jsonl",
        "stats.json",
        "meta.json",
        "quantizer.safetensors",
    }
