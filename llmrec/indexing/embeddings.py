"""Item text -> sentence-transformers embeddings, cached on disk per (model, text).

The cache is one safetensors file per model holding the sha256 of each text and its vector, so a
rebuild with the same model only embeds texts it has not seen (a changed template re-embeds only
the items whose text changed). Written atomically; nothing is pickled.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
from safetensors.numpy import load_file, save_file

from llmrec.artifacts import atomic_path, cache_dir
from llmrec.errors import LlmrecError
from llmrec.hub.resolve import model_key, resolve_model
from llmrec.templating import compile_template

DEFAULT_TEXT_TEMPLATE = (
    "{{ title }}{% if year %} ({{ year }}){% endif %}"
    "{% if categories %}. Genres: {{ categories | join(', ') }}{% endif %}"
    "{% if description %}. {{ description }}{% endif %}"
)


def item_texts(items: pa.Table, template: str = DEFAULT_TEXT_TEMPLATE) -> list[str]:
    """Render one text per item (in table order) from the item columns; empty texts are an error."""
    compiled = compile_template(template, items.column_names, "--text_template")
    texts = [compiled.render(**row).strip() for row in items.to_pylist()]
    empty = [items["item_id"][i].as_py() for i, t in enumerate(texts) if not t]
    if empty:
        raise LlmrecError(
            f"{len(empty)} item(s) render to empty text under --text_template (first: {', '.join(empty[:5])}); "
            "use a template over fields these items have"
        )
    return texts


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()[:16]


def embed_texts(texts: list[str], model: str = "all-minilm-l6-v2", batch_size: int = 256) -> np.ndarray:
    """(N,) texts -> (N, D) float32 L2-normalised embeddings, embedding only texts missing from the cache."""
    path = resolve_model(model)
    store = cache_dir("embeddings") / f"{hashlib.sha256(model_key(model).encode()).hexdigest()[:16]}.safetensors"
    keys, vecs = np.zeros((0, 16), np.uint8), None
    if store.exists():
        cached = load_file(str(store))
        keys, vecs = cached["keys"], cached["vectors"]
    row = {k.tobytes(): i for i, k in enumerate(keys)}
    digests = [_digest(t) for t in texts]
    missing = sorted({d: t for d, t in zip(digests, texts) if d not in row}.items())
    if missing:
        from sentence_transformers import SentenceTransformer

        from llmrec.hardware import pick_device

        encoder = SentenceTransformer(path, device=str(pick_device()))
        new = encoder.encode(
            [t for _, t in missing], batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True
        ).astype(np.float32)  # (M, D)
        new_keys = np.frombuffer(b"".join(d for d, _ in missing), np.uint8).reshape(-1, 16)
        keys = np.concatenate([keys, new_keys])
        vecs = new if vecs is None else np.concatenate([vecs, new])
        _save_atomic(store, {"keys": keys, "vectors": vecs}, {"model": path})
        row = {k.tobytes(): i for i, k in enumerate(keys)}
    return vecs[[row[d] for d in digests]]


def _save_atomic(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
