"""The LLM with collaborative item tokens and an item head (E4SRec) on a tiny Llama: causal, whole-catalog
ranking with history masked, learning a planted walk, the folder without the frozen LLM."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_model
from llmrec.collab import CollabConfig, CollabData, load_collab, top_k, train_collab
from llmrec.collab.itemhead import ItemHeadLLM
from llmrec.errors import LlmrecError
from test_collab import assert_causal_and_padding_blind, planted, small_sasrec  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llm") / "tiny"
    tiny_model(vocab_size=16).save_pretrained(folder)
    return str(folder)


def itemhead(**kw) -> dict:
    return {**dict(model="itemhead", dim=16, max_len=8, batch_size=8, lr=1e-2, dropout=0.0, lora_r=4), **kw}


def test_item_tokens_are_causal_and_left_padding_is_invisible(tiny_llm):
    torch.manual_seed(0)
    model = ItemHeadLLM(n_items=10, llm=tiny_llm, dim=8, max_len=6, lora_r=2, dropout=0.0).eval()
    with torch.no_grad():
        for p in (p for p in model.llm.parameters() if p.requires_grad):  # LoRA's B starts at 0: move it
            p.add_(0.01 * torch.randn_like(p))
    assert_causal_and_padding_blind(model, atol=2e-2)  # bf16 autocast where the CPU has it


def test_item_head_ranks_the_whole_catalog_never_a_history_item(planted, tmp_path, tiny_llm):  # noqa: F811
    out = tmp_path / "ih"
    train_collab(CollabConfig(data=str(planted.path), output=str(out), epochs=1, llm=tiny_llm, **itemhead()))
    model, data = load_collab(out, planted), CollabData.from_dataset(planted)
    test = data.split(planted, "test")
    scores = model.score(test.users, test.histories)
    assert scores.shape == (len(test.users), data.n_items)  # one forward pass scores every catalog item
    items, values = top_k(model, test.users, test.histories, k=data.n_items)
    for row, history, vals in zip(items, test.histories, values):
        unseen = sorted(set(range(data.n_items)) - set(history.tolist()))
        ranked = row[np.isfinite(vals)]
        assert sorted(ranked.tolist()) == unseen  # every unseen item exactly once, no history item
        assert not np.isfinite(vals[len(unseen):]).any()


def test_item_head_on_sasrec_items_learns_a_planted_walk(planted, tmp_path, tiny_llm):  # noqa: F811
    """Frozen SASRec item tokens, a LoRA'd tiny LLM and a fresh head: the next item follows from the last."""
    sasrec = tmp_path / "sasrec"
    train_collab(CollabConfig(data=str(planted.path), output=str(sasrec), epochs=3, **small_sasrec()))
    out = tmp_path / "ih"
    result = train_collab(CollabConfig(data=str(planted.path), output=str(out), epochs=25, patience=25,
                                       llm=tiny_llm, item_embeddings=str(sasrec), **itemhead()))
    losses = [h["loss"] for h in result["history"]]
    assert losses[-1] < 0.5 * losses[0]
    assert result["valid_metrics"]["ndcg@10"]["value"] > 0.8
    saved = load_file(out / "model.safetensors")
    torch.testing.assert_close(saved["item_emb.weight"], load_file(sasrec / "model.safetensors")["item_emb.weight"])
    assert any("lora_A" in k for k in saved) and "head.weight" in saved
    assert not [k for k in saved if k.startswith("llm.") and "lora_" not in k]  # the frozen LLM is not copied
    assert json.loads((out / "config.json").read_text())["llm"] == tiny_llm


def test_item_embeddings_must_fit(planted, tmp_path, tiny_llm):  # noqa: F811
    sasrec = tmp_path / "sasrec"
    train_collab(CollabConfig(data=str(planted.path), output=str(sasrec), epochs=1, **small_sasrec()))
    with pytest.raises(LlmrecError, match="item table of shape"):
        train_collab(CollabConfig(data=str(planted.path), output=str(tmp_path / "ih"), llm=tiny_llm,
                                  item_embeddings=str(sasrec), **itemhead(dim=32)))
    with pytest.raises(LlmrecError, match="itemhead option"):
        train_collab(CollabConfig(data=str(planted.path), output=str(tmp_path / "s"), item_embeddings=str(sasrec),
                                  **small_sasrec()))
    assert not (tmp_path / "ih").exists() and not (tmp_path / "s").exists()
