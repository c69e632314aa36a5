"""Prompt dataset building at scale: rows/s and peak memory, llmrec vs a hand-written loop.

A synthetic RecBole dataset (default 20M interactions, from bench_prepare.synthesize) is prepared once;
then, each in its own process:
  llmrec   build_prompt_datasets (sequential family, 20-item histories, sandboxed Jinja, batched
           datasets.map with --num-proc workers, Arrow on disk) over every training window;
  baseline what research scripts typically do: a Python loop over users building f-strings into a list
           of dicts, on the first --baseline-rows windows (all of them would not fit in memory as lists).
Prints rows/s, peak RSS (the process and its workers) and the ratio.

    python bench/bench_prompts.py                       # 20M interactions
    python bench/bench_prompts.py --n-interactions 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_prepare import synthesize


def run_llmrec(data: Path, num_proc: int) -> int:
    from llmrec.prompts.build import PromptBuildConfig, build_prompt_datasets

    config = PromptBuildConfig(data=str(data), item_format="title", max_history=20, num_proc=num_proc)
    return len(build_prompt_datasets(config)["train"])


def run_baseline(data: Path, limit: int) -> int:
    import pyarrow.parquet as pq

    items = pq.read_table(data / "items.parquet").to_pydict()
    title = dict(zip(items["item_id"], items["title"]))
    inter = pq.read_table(data / "interactions.parquet", columns=["user_id", "item_id", "split"]).to_pydict()
    rows, history, user = [], [], None
    for u, i, split in zip(inter["user_id"], inter["item_id"], inter["split"]):
        if u != user:
            user, history = u, []
        if split == "train" and history:
            shown = ", ".join(title[h] for h in history[-20:])
            rows.append({"prompt": f"User {u} has interacted with these items in order: {shown}. Predict the next "
                                   "item the user will interact with.", "completion": title[i], "user_id": u})
            if len(rows) == limit:
                break
        history.append(i)
    return len(rows)


def child(which: str, data: Path, arg: int) -> None:
    start = time.perf_counter()
    n = run_llmrec(data, arg) if which == "llmrec" else run_baseline(data, arg)
    seconds = time.perf_counter() - start
    peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    print(json.dumps({"rows": n, "seconds": seconds, "peak_mb": peak / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-interactions", type=int, default=20_000_000)
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--baseline-rows", type=int, default=1_000_000)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], Path(args.child[1]), int(args.child[2]))
    from llmrec.data import PrepareConfig, prepare

    with tempfile.TemporaryDirectory() as tmp:
        raw, data = Path(tmp, "raw"), Path(tmp, "ds")
        raw.mkdir()
        synthesize(raw, args.n_interactions)
        prepare(PrepareConfig(input=str(raw), output=str(data)))
        print(f"synthetic: {args.n_interactions:,} interactions prepared")
        results = {}
        for which, arg in (("baseline", args.baseline_rows), ("llmrec", args.num_proc)):
            env = {**os.environ, "LLMREC_CACHE": str(Path(tmp, "cache"))}  # spilled Arrow files go away with tmp
            done = subprocess.run([sys.executable, __file__, "--child", which, str(data), str(arg)],
                                  capture_output=True, text=True, env=env)
            if done.returncode != 0:
                sys.exit(f"{which} failed:\n{done.stderr[-3000:]}")
            results[which] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{'builder':<10}{'rows':>12}{'seconds':>10}{'rows/s':>12}{'peak MiB':>10}")
        for which, r in results.items():
            rate = r["rows"] / r["seconds"]
            print(f"{which:<10}{r['rows']:>12,}{r['seconds']:>10.1f}{rate:>12,.0f}{r['peak_mb']:>10,.0f}")
        b, o = results["baseline"], results["llmrec"]
        print(f"llmrec rows/s vs baseline: {(o['rows'] / o['seconds']) / (b['rows'] / b['seconds']):.2f}x; "
              f"peak memory per row: {o['peak_mb'] / o['rows'] * 1e6:,.0f} vs {b['peak_mb'] / b['rows'] * 1e6:,.0f} "
              "bytes (llmrec writes Arrow to disk; the baseline holds Python lists)")


if __name__ == "__main__":
    main()
