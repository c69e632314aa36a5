"""`llmrec index build`: a prepared dataset folder -> an `ItemIndex` folder, with quality figures.

Semantic methods embed item text (sentence-transformers, cached), quantise it (RQ-VAE or residual
k-means), then append TIGER's disambiguation level only if some items share a code tuple. When
codebook_size ** levels is smaller than the catalog, collisions are unavoidable and that extra level
absorbs them: the build still succeeds with 0 final collisions, and stats.json shows the raw rate.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from llmrec.data.dataset import PreparedDataset
from llmrec.errors import check_at_least
from llmrec.indexing import p5
from llmrec.indexing.embeddings import DEFAULT_TEXT_TEMPLATE, embed_texts, item_texts
from llmrec.indexing.item_index import ItemIndex, catalog_fingerprint, code_tokens
from llmrec.indexing.quantize import codebook_stats, disambiguate, residual_kmeans
from llmrec.indexing.rqvae import RQVAESettings, train_rqvae

METHODS = ("rqvae", "rqkmeans", "random", "sequential", "collaborative", "title")


@dataclass
class IndexBuildConfig:
    data: str = field(metadata={"help": "Prepared dataset folder (from `llmrec data prepare`)."})
    output: str = field(metadata={"help": "Folder to write the item index to (written atomically)."})
    method: Literal["rqvae", "rqkmeans", "random", "sequential", "collaborative", "title"] = field(
        default="rqvae", metadata={"help": "Indexing scheme: semantic IDs (rqvae, rqkmeans) or P5 (the others)."}
    )
    embedding_model: str = field(
        default="all-minilm-l6-v2", metadata={"help": "sentence-transformers model (name, path or hub id)."}
    )
    text_template: str = field(
        default=DEFAULT_TEXT_TEMPLATE, metadata={"help": "Jinja template over item columns giving the text to embed."}
    )
    levels: int = field(default=3, metadata={"help": "Semantic IDs: number of residual codebooks."})
    codebook_size: int = field(default=256, metadata={"help": "Semantic IDs: codes per codebook."})
    balanced: bool = field(
        default=True, metadata={"help": "rqkmeans: Sinkhorn-balanced assignment at every level (OneRec)."}
    )
    sinkhorn_last: bool = field(default=False, metadata={"help": "rqvae: balanced last level (LC-Rec)."})
    epochs: int = field(default=500, metadata={"help": "rqvae: training epochs."})
    batch_size: int = field(default=1024, metadata={"help": "rqvae: batch size."})
    latent_dim: int = field(default=32, metadata={"help": "rqvae: latent (codebook vector) size."})
    lr: float = field(default=1e-3, metadata={"help": "rqvae: learning rate (AdamW)."})
    n_clusters: int = field(default=20, metadata={"help": "collaborative: clusters per level / max leaf size."})
    seed: int = field(default=0, metadata={"help": "Seed for every random choice (k-means, RQ-VAE, random ids)."})
    overwrite: bool = field(default=False, metadata={"help": "Replace --output if it exists."})

    def __post_init__(self) -> None:
        # Out-of-range sizes would otherwise fail deep inside k-means, torch or a recursion, as a traceback.
        check_at_least(self, {"levels": 1, "codebook_size": 1, "epochs": 0, "batch_size": 1, "latent_dim": 1,
                              "n_clusters": 2}, positive=("lr",))


def build_index(config: IndexBuildConfig, dataset: PreparedDataset | None = None) -> ItemIndex:
    ds = dataset or PreparedDataset.load(config.data)
    items, start = ds.items, time.perf_counter()
    stats: dict[str, Any] = {"n_items": items.num_rows}
    quantizer: dict[str, np.ndarray] = {}
    if config.method in ("rqvae", "rqkmeans"):
        x = embed_texts(item_texts(items, config.text_template), config.embedding_model)  # (N, D)
        stats["embedding_seconds"] = round(time.perf_counter() - start, 2)
        raw, recon, quantizer, extra = _quantize(x, config)
        stats.update(extra)
        codes, stats["collision_rate_raw"] = disambiguate(raw)
        stats["levels"] = _level_stats(codes, [config.codebook_size] * config.levels)
        stats.update(semantic_quality(x, recon, raw[:, 0], seed=config.seed))
        code_list = [tuple(int(c) for c in row) for row in codes]
    elif config.method == "collaborative":
        co = p5.cooccurrence(items, ds.interactions)
        stats["items_without_cooccurrence"] = int((co.getnnz(axis=1) == 0).sum())
        code_list = p5.collaborative_codes(co, config.n_clusters, config.seed)
        stats["collision_rate_raw"] = 0.0
        stats["depth_max"] = max(len(c) for c in code_list)
    elif config.method == "title":
        code_list = [()] * items.num_rows
        titles, stats["collision_rate_raw"] = p5.title_strings(items)
    else:
        code_list = (
            p5.random_codes(items.num_rows, config.seed)
            if config.method == "random"
            else p5.sequential_codes(items, ds.interactions)
        )
        stats["collision_rate_raw"] = 0.0
    if config.method == "title":
        tokens = titles
    elif config.method in ("random", "sequential"):
        tokens = [str(c[0]) for c in code_list]
    else:
        tokens = [code_tokens(c) for c in code_list]
    stats["collisions_final"] = len(tokens) - len(set(tokens))
    stats["build_seconds"] = round(time.perf_counter() - start, 2)
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("data", "output", "overwrite")}
    return ItemIndex(
        config.method,
        items["item_id"].to_pylist(),
        code_list,
        tokens,
        catalog_fingerprint(items),
        settings,
        stats,
        quantizer,
    )


def _quantize(x: np.ndarray, c: IndexBuildConfig) -> tuple[np.ndarray, np.ndarray, dict, dict]:
    """-> raw codes (N, L), reconstructions (N, D) from the codes alone, weights, extra stats."""
    if c.method == "rqkmeans":
        codes, books = residual_kmeans(x, c.levels, c.codebook_size, c.seed, c.balanced)
        recon = books[np.arange(c.levels)[None, :], codes].sum(axis=1)  # (N, D)
        return codes, recon, {"codebooks": books}, {"reconstruction_mse": float(((recon - x) ** 2).mean())}
    s = RQVAESettings(
        levels=c.levels,
        codebook_size=c.codebook_size,
        latent_dim=c.latent_dim,
        epochs=c.epochs,
        batch_size=c.batch_size,
        lr=c.lr,
        sinkhorn_last=c.sinkhorn_last,
        seed=c.seed,
    )
    model, codes, mse = train_rqvae(x, s, log_every=max(1, c.epochs // 5))
    with torch.no_grad():
        recon = torch.cat([model.decode_codes(b) for b in torch.from_numpy(codes).split(65536)]).numpy()
    weights = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    return codes, recon, weights, {"reconstruction_mse": mse}


def _level_stats(codes: np.ndarray, sizes: list[int]) -> list[dict[str, float]]:
    if codes.shape[1] > len(sizes):  # the disambiguation level: its size is the largest collision group
        sizes = sizes + [int(codes[:, -1].max()) + 1]
    return codebook_stats(codes, sizes)


def semantic_quality(
    x: np.ndarray, recon: np.ndarray, first: np.ndarray, k: int = 10, n: int = 2000, seed: int = 0
) -> dict[str, float | None]:
    """Do codes keep meaning? Cosine distance of item pairs sharing a first-level code vs random pairs,
    and recall@k of nearest neighbours computed from the codes alone (their reconstructions) against
    nearest neighbours in embedding space, over a sample of `n` query items. A figure that a small
    catalog cannot give (no two items share a first code, k or fewer other items) is None."""
    rng = np.random.default_rng(seed)
    xn = torch.nn.functional.normalize(torch.from_numpy(x.astype(np.float32)), dim=1)  # (N, D)
    rn = torch.nn.functional.normalize(torch.from_numpy(recon.astype(np.float32)), dim=1)  # (N, D)
    same = _same_code_pairs(first, rng)
    a, b = rng.integers(0, len(x), (2, 20000))
    keep = a != b
    return {
        "distance_same_first_code": _mean_distance(xn, *same),
        "distance_random_pairs": _mean_distance(xn, a[keep], b[keep]),
        f"code_nn_recall@{k}": _code_nn_recall(xn, rn, k, n, rng) if len(x) > k else None,
    }


def _same_code_pairs(first: np.ndarray, rng: np.random.Generator, n: int = 20000) -> tuple[np.ndarray, np.ndarray]:
    """Up to `n` random pairs of distinct items with the same first code (none when all codes differ)."""
    order = np.argsort(first, kind="stable")
    starts = np.searchsorted(first[order], first)  # group start of each item in `order`
    sizes = np.bincount(first)[first]
    shared = np.flatnonzero(sizes > 1)
    if len(shared) == 0:
        return shared, shared
    i = rng.choice(shared, n)
    j = order[starts[i] + rng.integers(0, sizes[i] - 1)]
    j = np.where(j == i, order[starts[i] + sizes[i] - 1], j)  # never pair an item with itself
    return i, j


def _mean_distance(xn: torch.Tensor, p: np.ndarray, q: np.ndarray) -> float | None:
    return float((1 - (xn[p] * xn[q]).sum(1)).mean()) if len(p) else None


def _code_nn_recall(xn: torch.Tensor, rn: torch.Tensor, k: int, n: int, rng: np.random.Generator) -> float:
    queries = torch.from_numpy(rng.choice(len(xn), min(n, len(xn)), replace=False))
    hits = 0
    for q in queries.split(256):
        true = (xn[q] @ xn.T).index_fill_(1, q, -2).topk(k, dim=1).indices  # (Q, k), self excluded
        pred = (rn[q] @ rn.T).index_fill_(1, q, -2).topk(k, dim=1).indices
        hits += sum(len(set(t.tolist()) & set(p.tolist())) for t, p in zip(true, pred))
    return hits / (k * len(queries))


def main(argv: list[str] | None = None) -> None:
    from llmrec.cli import parse_args

    (config,) = parse_args(IndexBuildConfig, argv, prog="llmrec index build")
    index = build_index(config)
    index.save(config.output, overwrite=config.overwrite, config=dataclasses.asdict(config))
    print(f"wrote {config.output}: {config.method} index of {len(index.item_ids)} items")
    print(format_stats(index))


def format_stats(index: ItemIndex) -> str:
    s = index.stats
    lines = [
        f"collision rate before disambiguation {s['collision_rate_raw']:.2%}, final collisions "
        f"{s['collisions_final']}, build {s['build_seconds']} s"
    ]
    for n, lv in enumerate(s.get("levels", [])):
        lines.append(
            f"  level {n}: {lv['codebook_size']} codes, usage {lv['codebook_usage']:.1%}, "
            f"perplexity {lv['perplexity']:.1f}"
        )
    if "distance_same_first_code" in s:
        same, rand, recall = (
            _figure(s[k]) for k in ("distance_same_first_code", "distance_random_pairs", "code_nn_recall@10")
        )
        lines.append(
            f"cosine distance: same first code {same}, random pairs {rand}; code-space NN recall@10 "
            f"{recall}; reconstruction MSE {s['reconstruction_mse']:.2e}"
        )
    lines.append("examples: " + "; ".join(f"{i} -> {t}" for i, t in zip(index.item_ids[:3], index.tokens[:3])))
    return "\n".join(lines)


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    main(sys.argv[1:])
