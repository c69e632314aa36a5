"""Item index build time and quality, on ml-100k and on a synthetic 1M-item catalog.

Each row: build seconds, raw collision rate (before TIGER's disambiguation level), per-level codebook
usage and perplexity. The baseline, measured in the same run, is uniformly random codes of the same
shape: the ratio `collisions vs random` says how much more (>1) or less (<1) a quantiser collides
than chance; semantic codes cluster similar items, so some excess over chance is expected.

    python bench/bench_index.py                 # needs runs/ml-100k/dataset (make demo) for the ml-100k part
    python bench/bench_index.py --n-items 100000 --skip-ml100k

The synthetic catalog is a Gaussian mixture in 64 dimensions (embedding 1M texts with MiniLM would take
hours on a laptop CPU and measures the encoder, not the index). Collaborative (spectral) indexing is run
on ml-100k only: spectral clustering of a 1M-node graph is beyond this machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from llmrec.indexing.quantize import codebook_stats, disambiguate, residual_kmeans
from llmrec.indexing.rqvae import RQVAESettings, train_rqvae


def row(name: str, seconds: float, codes: np.ndarray | None, raw: float, chance: float, sizes: list[int]) -> None:
    levels = ""
    if codes is not None:
        stats = codebook_stats(codes, sizes)
        levels = "  ".join(f"L{n} usage {s['codebook_usage']:.0%} ppl {s['perplexity']:.0f}" for n, s in enumerate(stats))
    ratio = f"{raw / chance:.2f}x" if chance else "-"
    print(f"{name:<28} {seconds:>8.1f} s  raw collisions {raw:6.2%} (vs random {ratio:>6})  {levels}", flush=True)


def random_rate(n: int, levels: int, k: int, seed: int = 1) -> float:
    codes = np.random.default_rng(seed).integers(0, k, (n, levels))
    return disambiguate(codes)[1]


def ml100k(path: Path) -> None:
    from llmrec.data.dataset import PreparedDataset
    from llmrec.indexing.build import IndexBuildConfig, build_index

    ds = PreparedDataset.load(path)
    chance = random_rate(ds.items.num_rows, 3, 256)
    print(f"ml-100k: {ds.items.num_rows} items, 3 x 256 codes; uniformly random codes collide {chance:.2%}")
    for method in ("rqvae", "rqkmeans", "random", "sequential", "collaborative", "title"):
        t = time.perf_counter()
        index = build_index(IndexBuildConfig(data=str(path), output="", method=method), ds)
        s, seconds = index.stats, time.perf_counter() - t
        codes = np.array(index.codes) if s.get("levels") else None
        row(f"ml-100k {method}", seconds, codes, s["collision_rate_raw"], chance if codes is not None else 0,
            [lv["codebook_size"] for lv in s.get("levels", [])])
        if "code_nn_recall@10" in s:
            print(f"{'':<28} same-first-code distance {s['distance_same_first_code']:.3f} vs random pairs "
                  f"{s['distance_random_pairs']:.3f}, code-space NN recall@10 {s['code_nn_recall@10']:.3f}")


def synthetic(n: int, dim: int = 64, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(4096, dim)).astype(np.float32)
    x = centers[rng.integers(0, 4096, n)] + 0.3 * rng.normal(size=(n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    chance = random_rate(n, 3, 256)
    print(f"synthetic: {n} items, {dim}-d Gaussian mixture, 3 x 256 codes; random codes collide {chance:.2%}")
    for balanced in (False, True):
        t = time.perf_counter()
        codes, _ = residual_kmeans(x, 3, 256, balanced=balanced)
        row(f"synthetic rqkmeans{' balanced' if balanced else ''}", time.perf_counter() - t, codes,
            disambiguate(codes)[1], chance, [256] * 3)
    t = time.perf_counter()
    _, codes, _ = train_rqvae(x, RQVAESettings(epochs=3, batch_size=4096, hidden_dims=(128, 64)))
    row("synthetic rqvae (3 epochs)", time.perf_counter() - t, codes, disambiguate(codes)[1], chance, [256] * 3)
    t = time.perf_counter()
    rng.permutation(n)
    row("synthetic random (P5)", time.perf_counter() - t, None, 0.0, 0, [])


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
