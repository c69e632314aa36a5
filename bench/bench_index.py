"""Item index build time and quality, on ml-100k and on a synthetic 1M-item catalog.

Each row: build seconds, raw collision rate (before TIGER's disambiguation level), per-level codebook
usage and perplexity. Baselines, measured in the same run: plain residual quantisation without our
additions (RQ-KMeans without balancing; RQ-VAE without dead-code restarts), so the ratios show what
balancing and restarts buy in collisions and codebook usage.

    python bench/bench_index.py                 # needs runs/ml-100k/dataset (make demo) for the ml-100k part
    python bench/bench_index.py --n-items 100000 --skip-ml100k

The synthetic catalog is a Gaussian mixture in 64 dimensions with 65,536 components (embedding 1M texts
with MiniLM would take hours on a laptop CPU and measures the encoder, not the index). Collaborative
(spectral) indexing runs on ml-100k only: spectral clustering of a 1M-node graph is beyond this machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from llmrec.indexing.quantize import codebook_stats, disambiguate, residual_kmeans
from llmrec.indexing.rqvae import RQVAESettings, train_rqvae


def report(name: str, seconds: float, codes: np.ndarray) -> dict:
    stats = codebook_stats(codes, [256] * codes.shape[1])
    rate = disambiguate(codes)[1]
    levels = "  ".join(f"L{n} usage {s['codebook_usage']:.0%} ppl {s['perplexity']:.0f}" for n, s in enumerate(stats))
    print(f"{name:<34} {seconds:>7.1f} s  raw collisions {rate:6.2%}  {levels}", flush=True)
    return {"rate": rate, "usage": min(s["codebook_usage"] for s in stats), "seconds": seconds}


def compare(ours: dict, base: dict, what: str) -> None:
    ratio = f"{base['rate'] / ours['rate']:.1f}x fewer" if ours["rate"] else "none left"
    print(f"  -> {what}: collisions {ratio}; lowest level usage {ours['usage']:.0%} vs {base['usage']:.0%}; "
          f"time {ours['seconds'] / base['seconds']:.2f}x", flush=True)


def quantizers(x: np.ndarray, label: str, rqvae: RQVAESettings) -> None:
    runs = {}
    for balanced in (False, True):
        t = time.perf_counter()
        codes, _ = residual_kmeans(x, 3, 256, balanced=balanced)
        runs[balanced] = report(f"{label} rqkmeans{' balanced' if balanced else ''}", time.perf_counter() - t, codes)
    compare(runs[True], runs[False], "balanced vs plain RQ-KMeans")
    for restarts in (False, True):
        t = time.perf_counter()
        _, codes, _ = train_rqvae(x, RQVAESettings(**{**vars(rqvae), "dead_code_restarts": restarts}))
        runs[restarts] = report(f"{label} rqvae{' + restarts' if restarts else ''}", time.perf_counter() - t, codes)
    compare(runs[True], runs[False], "restarts vs plain RQ-VAE")


def ml100k(path: Path) -> None:
    from llmrec.data.dataset import PreparedDataset
    from llmrec.indexing.build import IndexBuildConfig, build_index
    from llmrec.indexing.embeddings import embed_texts, item_texts

    ds = PreparedDataset.load(path)
    x = embed_texts(item_texts(ds.items))
    print(f"ml-100k: {ds.items.num_rows} items, all-MiniLM-L6-v2 title+year+genres, 3 x 256 codes")
    quantizers(x, "ml-100k", RQVAESettings())
    for method in ("rqkmeans", "random", "sequential", "collaborative", "title"):
        t = time.perf_counter()
        s = build_index(IndexBuildConfig(data=str(path), output="", method=method), ds).stats
        extra = (f", code-space NN recall@10 {s['code_nn_recall@10']:.3f}, same-first-code distance "
                 f"{s['distance_same_first_code']:.3f} vs random pairs {s['distance_random_pairs']:.3f}"
                 if "code_nn_recall@10" in s else "")
        print(f"ml-100k index build --method {method:<14} {time.perf_counter() - t:6.1f} s  raw collisions "
              f"{s['collision_rate_raw']:.2%}, final {s['collisions_final']}{extra}", flush=True)


def synthetic(n: int, dim: int = 64, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(65536, dim)).astype(np.float32)
    x = centers[rng.integers(0, 65536, n)] + 0.5 * rng.normal(size=(n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    print(f"synthetic: {n} items, {dim}-d Gaussian mixture, 3 x 256 codes")
    quantizers(x, "synthetic", RQVAESettings(epochs=3, batch_size=4096, hidden_dims=(128, 64)))
    t = time.perf_counter()
    rng.permutation(n)
    print(f"synthetic random (P5)               {time.perf_counter() - t:7.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="runs/ml-100k/dataset")
    parser.add_argument("--n-items", type=int, default=1_000_000)
    parser.add_argument("--skip-ml100k", action="store_true")
    args = parser.parse_args()
    if not args.skip_ml100k:
        ml100k(Path(args.data))
    synthetic(args.n_items)


if __name__ == "__main__":
    main()
