"""LLM item representations inside classic models: one forward pass of a text encoder over the catalog.

Two published ways to give a collaborative model what a language model knows about items:
- **Initialisation** (Harte et al., "Leveraging Large Language Models for Sequential Recommendation",
  RecSys 2023, Sec. 3.3; LLMInit, Zhang et al. 2025): the item embedding table of SASRec or BPR starts
  from the items' text embeddings reduced by PCA to the model's width, then trains as usual.
- **Side information in a closed form** (Jeunen et al., "Closed-Form Models for Collaborative Filtering
  with Side-Information", RecSys 2020, collective EASE; L3AE, 2025, with LLM embeddings as the side
  information): EASE's Gram matrix X^T X gains alpha * E E^T, as if every embedding dimension were one
  more user whose "interactions" are the items' (centred, unit-length) text vectors.

The encoder is any sentence-transformers model or causal LM folder (mean-pooled last hidden states):
`all-minilm-l6-v2` or `smollm2-135m` offline. Vectors are cached per text (`indexing.embeddings`).
"""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA

from llmrec.data.dataset import PreparedDataset
from llmrec.indexing.embeddings import embed_texts, item_texts


def catalog_text_vectors(dataset: PreparedDataset, model: str) -> np.ndarray:
    """(N, E) the encoder's vectors of the items' texts (title, year, genres), rows in catalog order."""
    return embed_texts(item_texts(dataset.items), model=model)


def centred_unit_rows(vectors: np.ndarray) -> np.ndarray:
    """(N, E) -> (N, E) rows minus the catalog mean, then L2-normalised: raw sentence vectors share a large
    common direction (every cosine is positive), which as side information would tie every item to every
    other one."""
    x = vectors - vectors.mean(0, keepdims=True)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def pca_init(vectors: np.ndarray, dim: int, std: float, seed: int = 0) -> np.ndarray:
    """(N, E) -> (N, dim) PCA projection scaled so the table's entries have standard deviation `std` (the model's own
    init scale, so training dynamics stay as tuned). Components beyond what N and E allow stay zero."""
    k = min(dim, *vectors.shape)
    reduced = PCA(n_components=k, random_state=seed).fit_transform(vectors.astype(np.float64))  # (N, k)
    out = np.zeros((len(vectors), dim))
    out[:, :k] = reduced
    return (out * (std / max(out.std(), 1e-12))).astype(np.float32)
