"""Metric speed and agreement: llmrec.evaluation.metrics vs ranx (numba) on the same ranked lists.

Synthetic full-ranking output: U users, top-50 lists over a 50k-item catalog, 1 or several held-out items
per user, hits planted at random ranks. Both libraries compute hit/recall/precision/ndcg/mrr/map@{10,50};
the values must agree to 1e-9 (ranx's `hit_rate` is our `hit`). Timings exclude building the inputs
(our (U, K) hit matrix from item codes is timed separately; ranx's Qrels/Run from dicts too).

pip install 'llmrec[bench]'   # ranx
python bench/bench_metrics.py [--users 100000]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from llmrec.evaluation.metrics import ranking_metrics

METRICS = ("hit", "recall", "precision", "ndcg", "mrr", "map")
KS = (10, 50)


def synthetic(n_users: int, n_items: int, k: int, max_relevant: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    ranked = np.stack([rng.choice(n_items, k, replace=False) for _ in range(n_users)])  # (U, K)
    n_rel = rng.integers(1, max_relevant + 1, n_users)  # (U,)
    relevant = []
    for u in range(n_users):  # some relevant items sit in the list (planted), the rest outside it
        planted = ranked[u, rng.choice(k, rng.integers(0, n_rel[u] + 1), replace=False)].tolist()
        outside = [i for i in rng.choice(n_items, n_rel[u] + k, replace=False).tolist() if i not in ranked[u]]
        relevant.append(set(planted + outside[: n_rel[u] - len(planted)]))
    return ranked, relevant


def ours(ranked: np.ndarray, relevant: list[set[int]]) -> tuple[dict[str, float], float, float]:
    t0 = time.perf_counter()
    hits = np.array([[i in rel for i in row] for row, rel in zip(ranked.tolist(), relevant)])  # (U, K)
    n_rel = np.array([len(r) for r in relevant])
    t1 = time.perf_counter()
    per_user = ranking_metrics(hits, n_rel, KS)
    t2 = time.perf_counter()
    return {f"{m}@{k}": float(per_user[f"{m}@{k}"].mean()) for m in METRICS for k in KS}, t1 - t0, t2 - t1


def with_ranx(ranked: np.ndarray, relevant: list[set[int]]) -> tuple[dict[str, float], float, float]:
    from ranx import Qrels, Run, evaluate

    t0 = time.perf_counter()
    k = ranked.shape[1]
    qrels = Qrels({f"u{u}": {f"i{i}": 1 for i in rel} for u, rel in enumerate(relevant)})
    run = Run({f"u{u}": {f"i{i}": float(k - r) for r, i in enumerate(row)} for u, row in enumerate(ranked.tolist())})
    t1 = time.perf_counter()
    names = [f"{'hit_rate' if m == 'hit' else m}@{k}" for m in METRICS for k in KS]
    scores = evaluate(qrels, run, names)
    t2 = time.perf_counter()
    keys = [f"{m}@{k}" for m in METRICS for k in KS]
    return {key: float(scores[n]) for key, n in zip(keys, names)}, t1 - t0, t2 - t1


def main() -> None:
    warnings.filterwarnings("ignore", message="unsafe cast")  # ranx's numba kernels, harmless here
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=50_000)
    args = parser.parse_args()
    for max_relevant in (1, 5):
        ranked, relevant = synthetic(args.users, args.items, max(KS), max_relevant)
        with_ranx(ranked[:100], relevant[:100])  # warm-up (numba compiles on first use): not timed
        ours(ranked[:100], relevant[:100])
        a, prep_a, time_a = ours(ranked, relevant)
        b, prep_b, time_b = with_ranx(ranked, relevant)
        worst = max(abs(a[m] - b[m]) for m in a)
        label = "leave-one-out" if max_relevant == 1 else f"1-{max_relevant} relevant"
        print(f"{args.users} users, top-{max(KS)} of {args.items} items, {label}: 12 metrics")
        print(f"  llmrec  metrics {time_a:7.3f} s   (hit matrix from item codes {prep_a:6.2f} s)")
        print(f"  ranx    metrics {time_b:7.3f} s   (Qrels/Run from dicts {prep_b:6.2f} s)")
        print(f"  -> llmrec vs ranx: {time_b / time_a:.1f}x the speed on metrics, "
              f"{(prep_b + time_b) / (prep_a + time_a):.1f}x end to end; largest difference in value {worst:.1e}")
        for name in ("ndcg@10", "recall@10", "map@50"):
            print(f"     {name:<10} llmrec {a[name]:.6f}  ranx {b[name]:.6f}")
        if worst > 1e-9:
            raise SystemExit(f"values disagree by {worst}: {[m for m in a if abs(a[m] - b[m]) > 1e-9]}")


if __name__ == "__main__":
    main()
