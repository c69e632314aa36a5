"""Dataset preparation at scale: llmrec vs a hand-written pandas pipeline on the same synthetic file.

Writes a RecBole atomic dataset with N interactions (default 20M; Zipf-distributed items, as real
catalogs are), then runs each pipeline in its own process and prints rows/s, peak memory and ratios.
The pandas baseline is what the scripts llmrec replaces typically do: read_csv, stable sort by user and
time, drop duplicates, leave-one-out with groupby().cumcount(), popularity from train.

    python bench/bench_prepare.py                      # 20M interactions
    python bench/bench_prepare.py --n-interactions 1000000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv


def synthesize(folder: Path, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    n_users, n_items = max(n // 100, 10), max(n // 200, 10)
    users = rng.integers(0, n_users, n)
    items = np.minimum(rng.zipf(1.3, n), n_items) - 1
    inter = pa.table(
        {
            "user": pa.array(users).cast(pa.string()),
            "item": pa.array(items).cast(pa.string()),
            "rating": pa.array(rng.integers(1, 6, n)),
            "timestamp": pa.array(rng.integers(1_000_000_000, 1_100_000_000, n)),
        }
    )
    ids = np.arange(n_items)
    titles = pa.table({"item": pa.array(ids).cast(pa.string()), "title": [f"Item number {i}" for i in ids]})
    write_atomic(folder / "synth.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float", inter)
    write_atomic(folder / "synth.item", "item_id:token\ttitle:token_seq", titles)


def write_atomic(path: Path, header: str, table: pa.Table) -> None:
    """A RecBole atomic file: typed header line, then tab-separated rows (Arrow's writer quotes headers)."""
    with open(path, "wb") as f:
        f.write(header.encode() + b"\n")
        options = pacsv.WriteOptions(delimiter="\t", quoting_style="none", include_header=False)
        pacsv.write_csv(table, f, options)


def run_llmrec(folder: Path, out: Path) -> None:
    from llmrec.data import PrepareConfig, prepare

    prepare(PrepareConfig(input=str(folder), output=str(out)))


def run_pandas(folder: Path, out: Path) -> None:
    import pandas as pd

    df = pd.read_csv(
        folder / "synth.inter",
        sep="\t",
        header=0,
        names=["user_id", "item_id", "rating", "timestamp"],
        dtype={"user_id": str, "item_id": str},
    )
    items = pd.read_csv(folder / "synth.item", sep="\t", header=0, names=["item_id", "title"], dtype=str)
    df = df[df["item_id"].isin(items["item_id"])]
    df = df.sort_values(["user_id", "timestamp"], kind="stable").drop_duplicates(["user_id", "item_id"])
    from_end = df.groupby("user_id").cumcount(ascending=False)
    n = df.groupby("user_id")["item_id"].transform("size")
    df["split"] = np.where((from_end == 0) & (n >= 3), "test", np.where((from_end == 1) & (n >= 3), "valid", "train"))
    pop = df[df["split"] == "train"]["item_id"].value_counts()
    items["popularity"] = items["item_id"].map(pop).fillna(0).astype(int)
    out.mkdir()
    df.to_parquet(out / "interactions.parquet")
    items.to_parquet(out / "items.parquet")


def child(which: str, folder: Path, out: Path) -> None:
    start = time.perf_counter()
    {"llmrec": run_llmrec, "pandas": run_pandas}[which](folder, out)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-interactions", type=int, default=20_000_000)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], Path(args.child[1]), Path(args.child[2]))

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp, "raw")
        folder.mkdir()
        t = time.perf_counter()
        synthesize(folder, args.n_interactions)
        size_mb = (folder / "synth.inter").stat().st_size / 2**20
        print(f"synthetic: {args.n_interactions:,} interactions, {size_mb:,.0f} MiB ({time.perf_counter() - t:.1f} s)")
        results = {}
        for which in ("pandas", "llmrec"):
            done = subprocess.run(
                [sys.executable, __file__, "--child", which, str(folder), str(Path(tmp, which))],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                sys.exit(f"{which} failed:\n{done.stderr}")
            results[which] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{'pipeline':<10}{'seconds':>10}{'rows/s':>14}{'peak MiB':>10}")
        for which, r in results.items():
            print(f"{which:<10}{r['seconds']:>10.1f}{args.n_interactions / r['seconds']:>14,.0f}{r['peak_mb']:>10,.0f}")
        b, o = results["pandas"], results["llmrec"]
        print(
            f"llmrec vs pandas: {b['seconds'] / o['seconds']:.2f}x faster, "
            f"{o['peak_mb'] / b['peak_mb']:.2f}x the peak memory"
        )


if __name__ == "__main__":
    main()
