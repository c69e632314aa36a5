"""The quality table: every recommender on ml-100k under one protocol, LLM rows against the classic ones.

Protocol (each row's report says it too): leave-one-out by time, full ranking over the whole catalog,
history items masked, ALL test users, 95% bootstrap CIs. Each row is a pair of `llmrec` commands a user
can run (printed in the table): train (if the row trains) and `llmrec eval rank`. Rows run one at a time
(2 cores: never two trainings at once) and are saved one by one under --out/rows/, so an interrupted bench
resumes at the first unfinished row; the training commands resume their own checkpoints too.

LLM rows carry a paired test (sign-flip permutation on per-user NDCG@10) against the best classic row of
the same run, against their own retriever, and against the same model before their training stage (SFT
before DPO). --keep carries an earlier run's rows over, marked, where this run did not measure them.
Budgets: the configs' own (at most ~60 minutes of training
per row on 2 CPU cores); --full raises the re-ranker's training rows and the generative rows' beam (50:
Recall@50) for GPU users.

python bench/quality.py [--rows sasrec,ease] [--seeds 1,2] [--full] [--out runs/quality] [--publish bench/results]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.artifacts import read_json, write_json
from llmrec.evaluation.compare import compare_reports
from llmrec.evaluation.stats import paired_permutation_test

CONFIGS = Path("recipes/configs/ml-100k")
METRICS = ["ndcg@1", "ndcg@5", "ndcg@10", "ndcg@20", "recall@5", "recall@10", "recall@20", "recall@50", "mrr@10",
           "coverage@10", "arp@10"]


@dataclass
class Row:
    name: str
    kind: str  # "classic" or "llm"
    train: list[str] = field(default_factory=list)  # llmrec arguments; {out}, {data}, {row:NAME} filled in
    rankings: str | None = None  # a rankings file in {out} to score; None: the trained folder, or `baseline`
    baseline: str | None = None
    retriever: str | None = None  # the row whose candidates an LLM row re-ranks
    before: str | None = None  # the row it is paired with besides the best classic: the same model before this
    # row's training stage (SFT before DPO), or plain LoRA for personalized LoRA
    setup: list[str] = field(default_factory=list)  # llmrec arguments run once before training (an index)
    what: str = ""
    seeded: bool = False  # trained by gradient from a random start: --seeds retrains it (closed forms are not)
    ks: tuple[int, ...] = ()  # cut-offs when not eval rank's default; a generative row's beam width is max(ks)


def collab(config: str, *extra: str) -> list[str]:
    return ["train", "collab", "--config", str(CONFIGS / config), "--data", "{data}", "--output", "{out}", *extra]


RERANK = ["train", "rerank", "--config", str(CONFIGS / "smollm2-rerank.yaml"), "--data", "{data}",
          "--retriever", "{row:sasrec}", "--output_dir", "{out}"]
RERANK_ZERO_SHOT = [*RERANK, "--zero_shot", "true"]  # the same prompts and scoring, nothing trained
# Generative rows rank by beam search, whose width is the largest K: 10 instead of 20 scores 943 users in
# about 6 instead of 17 minutes on 2 CPU cores; their @20 metrics are then not measured ("-").
BEAM_10 = (1, 5, 10)
FULL_BEAM = (1, 5, 10, 50)  # --full (GPU budgets): Recall@50, from a beam of width 50


def llm_stage(recipe: str, config: str, *extra: str) -> list[str]:
    return ["train", recipe, "--config", str(CONFIGS / config), "--output_dir", "{out}", *extra]


ROWS = [
    Row("most-popular", "classic", baseline="most_popular", what="training-split counts"),
    Row("bpr", "classic", collab("bpr.yaml"), what="BPR-MF (Rendle 2009)", seeded=True),
    Row("ease", "classic", collab("ease.yaml"), what="EASE (Steck 2019), lambda on valid"),
    Row("sasrec", "classic", collab("sasrec.yaml", "--candidates", "20"), what="SASRec, full-softmax CE",
        seeded=True),
    Row("sasrec-seed1", "classic", collab("sasrec.yaml", "--seed", "1"), what="SASRec, seed 1"),
    Row("sasrec+sasrec-fused", "classic", collab("fused-sasrec-seeds.yaml", "--members", "{row:sasrec}",
                                                 "{row:sasrec-seed1}"),
        what="z(SASRec) + w z(SASRec seed 1), w chosen on valid: the classic ensemble, the control for fusion"),
    Row("ease+minilm", "llm", collab("ease.yaml", "--text_encoder", "all-minilm-l6-v2"),
        what="collective EASE with MiniLM item-text vectors (L3AE-style)"),
    Row("ease+smollm2", "llm", collab("ease.yaml", "--text_encoder", "smollm2-135m"),
        what="collective EASE with SmolLM2 mean-pooled item-text vectors"),
    Row("sasrec+minilm-init", "llm", collab("sasrec-minilm-init.yaml"),
        what="SASRec, item embeddings from PCA of MiniLM vectors (LLMInit)", seeded=True),
    Row("sasrec+smollm2-init", "llm", collab("sasrec.yaml", "--text_encoder", "smollm2-135m"),
        what="SASRec, item embeddings from PCA of SmolLM2 vectors (LLMInit)", seeded=True),
    Row("itemhead-smollm2", "llm", collab("smollm2-itemhead.yaml", "--item_embeddings", "{row:sasrec}"),
        what="SmolLM2-135M LoRA reading SASRec's item embeddings as one token per item, linear head over the "
        "catalog (E4SRec)", seeded=True),
    Row("itemhead+sasrec-fused", "llm", collab("fused-sasrec-itemhead.yaml", "--members", "{row:sasrec}",
                                                "{row:itemhead-smollm2}"), retriever="sasrec",
        what="z(SASRec) + w z(itemhead-smollm2) over the whole catalog, w chosen on valid"),
    Row("rerank-smollm2-fused", "llm", RERANK, rankings="rankings-test-fused.jsonl", retriever="sasrec",
        what="SmolLM2-135M LoRA re-ranker of SASRec's top 20 (inline scoring, SASRec's rank shown, trained on "
        "the target + distillation from SASRec), fused with SASRec (lambda on valid)"),
    Row("rerank-smollm2-llm-order", "llm", RERANK, rankings="rankings-test-llm.jsonl", retriever="sasrec",
        what="the same re-ranker's own order of SASRec's top 20"),
    Row("rerank-zeroshot-fused", "llm", RERANK_ZERO_SHOT, rankings="rankings-test-fused.jsonl", retriever="sasrec",
        what="SmolLM2-135M zero-shot (no training) re-ranking SASRec's top 20 with the same prompts and scoring, "
        "fused with SASRec (lambda on valid)"),
    Row("rerank-zeroshot-llm-order", "llm", RERANK_ZERO_SHOT, rankings="rankings-test-llm.jsonl",
        retriever="sasrec", what="the zero-shot re-ranker's own order of SASRec's top 20"),
    Row("sft-lora-titles", "llm", llm_stage("sft", "smollm2-lora-titles.yaml", "--data", "{data}"),
        what="SmolLM2-135M LoRA generating titles (the demo's SFT), trie-constrained beam search of width 10",
        ks=BEAM_10),
    Row("sft-lora-semantic-ids", "llm", llm_stage("sft", "smollm2-lora-semantic-ids.yaml", "--data", "{data}",
                                                  "--index", "{row:index-rqvae}"),
        setup=["index", "build", "--data", "{data}", "--method", "rqvae", "--output", "{row:index-rqvae}"],
        what="SmolLM2-135M LoRA generating RQ-VAE semantic IDs (new tokens whose rows train, + title alignment "
        "rows; LC-Rec style), trie-constrained beam search of width 10", ks=BEAM_10),
    Row("dpo-titles", "llm", llm_stage("dpo", "smollm2-dpo-titles.yaml", "--sft_checkpoint", "{row:sft-lora-titles}"),
        before="sft-lora-titles", what="sft-lora-titles after DPO (1 random negative per prompt)", ks=BEAM_10),
    Row("sdpo-titles", "llm", llm_stage("dpo", "smollm2-sdpo-titles.yaml", "--sft_checkpoint", "{row:sft-lora-titles}"),
        before="sft-lora-titles", what="sft-lora-titles after softmax-DPO (3 random negatives per prompt)",
        ks=BEAM_10),
    Row("grpo-titles", "llm", llm_stage("grpo", "smollm2-grpo-titles.yaml", "--sft_checkpoint",
                                        "{row:sft-lora-titles}", "--reward_model", "{row:ease}"),
        before="sft-lora-titles", what="sft-lora-titles after GRPO (G=8 beam rollouts; rewards hit + rank-aware "
        "(MiniOneRec) + 0.5 x EASE's score)", ks=BEAM_10),
    Row("plora-ilora-titles", "llm", llm_stage("plora", "smollm2-plora-titles.yaml", "--data", "{data}", "--encoder",
                                               "{row:sasrec}"),
        before="sft-lora-titles", what="sft-lora-titles' data and steps, personalized: iLoRA (rank 16 as 4 experts of "
        "rank 4, gated per user by the frozen SASRec's state)", ks=BEAM_10),
    Row("plora-reclora-titles", "llm", llm_stage("plora", "smollm2-plora-titles.yaml", "--data", "{data}",
                                                 "--encoder", "{row:sasrec}", "--shape", "reclora", "--lora_r", "8"),
        before="sft-lora-titles", what="the same, RecLoRA (4 meta-LoRAs of rank 8 mixed per user, one shared B)",
        ks=BEAM_10),
    Row("plora-ilora-semantic-ids", "llm", llm_stage("plora", "smollm2-plora-semantic-ids.yaml", "--data", "{data}",
                                                     "--index", "{row:index-rqvae}", "--encoder", "{row:sasrec}"),
        setup=["index", "build", "--data", "{data}", "--method", "rqvae", "--output", "{row:index-rqvae}"],
        before="sft-lora-semantic-ids", what="sft-lora-semantic-ids' data and steps, personalized: iLoRA (4 experts "
        "of rank 4, gated per user by the frozen SASRec's state)", ks=BEAM_10),
    Row("tiger-scratch", "llm", llm_stage("sft", "scratch-semantic-ids.yaml", "--data", "{data}", "--index",
                                          "{row:index-rqkmeans}"),
        setup=["index", "build", "--data", "{data}", "--method", "rqkmeans", "--output", "{row:index-rqkmeans}"],
        what="TIGER-style: a 4 x 128 transformer from scratch over RQ-KMeans semantic IDs (vocabulary: the item "
        "tokens + 4 specials), trie-constrained beam search of width 10", ks=BEAM_10),
]


WHAT = {row.name: row.what for row in ROWS}  # descriptions as the code has them now, also for carried-over rows


def run_measured(argv: list[str], log: Path) -> tuple[float, float]:
    """Run a command, its output appended to `log`; -> (wall seconds, peak resident MiB of the process)."""
    start = time.perf_counter()
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"\n$ {shlex.join(argv)}\n")
        f.flush()
        proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {shlex.join(argv)} (see {log})")
    return time.perf_counter() - start, usage.ru_maxrss / 1024  # Linux reports KiB


def fill(argv: list[str], out: Path, data: str, root: Path) -> list[str]:
    def one(a: str) -> str:
        if a.startswith("{row:"):
            return str(root / a[5:-1])
        return a.replace("{out}", str(out)).replace("{data}", data)

    return [one(a) for a in argv]


def measure(row: Row, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Train (unless done) and score one row; -> its entry of quality.json without the paired tests."""
    out, llmrec, log = root / row_folder(row), [sys.executable, "-m", "llmrec.cli"], root / "bench.log"
    train_cmd = fill(row.train, out, args.data, root) + (["--max_train_rows", "20000"] if args.full and
                                                          row.train == RERANK else [])
    train_seconds = peak = setup_seconds = 0.0
    setup = fill(row.setup, out, args.data, root)
    # built once per bench folder: rows that share an index (an SFT row and its personalized sibling) must
    # train on the same one, and a rebuild is not guaranteed to reproduce it
    if setup and not Path(setup[setup.index("--output") + 1]).exists():
        setup_seconds, peak = run_measured(llmrec + setup, log)
    if row.train and not (out / (row.rankings or "llmrec.json")).exists():
        if row.train == RERANK and (out / "llmrec.json").exists():  # trained, scoring interrupted
            train_cmd += ["--eval_only", "true"]
        train_seconds, peak = run_measured(llmrec + train_cmd, log)
    if row.train:
        done = read_json(out / "llmrec.json")["result"]
        # the training loop's own time, without loading; plus the setup's (building an index is part of the cost)
        train_seconds = done.get("train_seconds", train_seconds) + setup_seconds
    report = root / "reports" / row.name
    source = (["--baseline", row.baseline] if row.baseline else ["--rankings", str(out / row.rankings)]
              if row.rankings else ["--checkpoint", str(out)])
    ks = FULL_BEAM if args.full and row.ks == BEAM_10 else row.ks
    eval_cmd = ["eval", "rank", "--data", args.data, *source, "--output", str(report), "--overwrite",
                *(["--ks", *map(str, ks)] if ks else [])]
    score_seconds, eval_peak = run_measured(llmrec + eval_cmd, log)
    metrics = read_json(report / "metrics.json")
    return {"name": row.name, "kind": row.kind, "what": row.what, "retriever": row.retriever, "before": row.before,
            **{m: metrics[m] for m in METRICS if m in metrics},
            "hallucination_rate": metrics.get("hallucination_rate", 0.0), "users": metrics.get("users_evaluated"),
            "train_seconds": round(train_seconds, 1), "score_seconds": round(score_seconds, 1),
            "peak_mib": round(max(peak, eval_peak)), "report": str(report),
            "command": " && ".join(shlex.join(["llmrec", *c]) for c in ([fill(row.setup, out, args.data, root)] if
                                                                        row.setup else []) +
                                   ([train_cmd] if row.train else []) + [eval_cmd])}


def other_seeds(row: Row, entry: dict[str, Any], seeds: list[int], args: argparse.Namespace, root: Path) -> None:
    """Retrain a seeded row (a collab model trained by gradient) with more seeds, in place: one seed's paired
    test says nothing about training noise, the spread over seeds does. Adds {seed: {ndcg@10, recall@10}}
    under `seeds`."""
    llmrec, log = [sys.executable, "-m", "llmrec.cli"], root / "bench.log"
    done = entry.setdefault("seeds", {"0": {m: value(entry[m]) for m in ("ndcg@10", "recall@10")}})
    for seed in (s for s in seeds if str(s) not in done):
        out, report = root / f"{row.name}-seed{seed}", root / "reports" / f"{row.name}-seed{seed}"
        train = fill(row.train, out, args.data, root)
        if "--candidates" in train:  # only seed 0's candidates feed a re-ranker
            at = train.index("--candidates")
            del train[at : at + 2]
        run_measured(llmrec + train + ["--seed", str(seed)], log)
        run_measured(llmrec + ["eval", "rank", "--data", args.data, "--checkpoint", str(out), "--output",
                               str(report), "--overwrite"], log)
        metrics = read_json(report / "metrics.json")
        done[str(seed)] = {m: value(metrics[m]) for m in ("ndcg@10", "recall@10")}


def row_folder(row: Row) -> str:
    """Rows that read one training run's different outputs share its folder."""
    shared = {tuple(RERANK): "rerank-smollm2", tuple(RERANK_ZERO_SHOT): "rerank-smollm2-zeroshot"}
    return shared.get(tuple(row.train), row.name)


def paired_tests(rows: list[dict[str, Any]]) -> None:
    """p_vs_best_classic (and p_vs_retriever, p_vs_before) on per-user NDCG@10 for every LLM row measured in
    this run, in place; the best classic row is one measured in this run too."""
    classic = [r for r in rows if r["kind"] == "classic" and not r.get("carried_over")]
    best = max(classic, key=lambda r: r["ndcg@10"]["value"]) if classic else None
    measured = {r["name"]: r for r in rows if not r.get("carried_over")}
    for r in rows:
        if r["kind"] != "llm" or r.get("carried_over"):
            continue
        if best is not None:
            test = compare_reports(best["report"], r["report"], ["ndcg@10"])["ndcg@10"]
            r.update(best_classic=best["name"], diff_vs_best_classic=test["diff"], p_vs_best_classic=test["p_value"])
            averaged = seed_averaged_test(best, r)
            if averaged:
                r["seed_averaged_vs_best_classic"] = averaged
        for reference in ("retriever", "before"):
            if r.get(reference) in measured:
                test = compare_reports(measured[r[reference]]["report"], r["report"], ["ndcg@10"])["ndcg@10"]
                r.update({f"diff_vs_{reference}": test["diff"], f"p_vs_{reference}": test["p_value"]})


def seed_averaged_ndcg(row: dict[str, Any]) -> dict[str, float]:
    """{user: NDCG@10 averaged over the row's seeds}: each user's score with the training noise averaged out."""
    folders = [Path(row["report"]).parent / (row["name"] if s == "0" else f"{row['name']}-seed{s}")
               for s in sorted(row["seeds"])]
    per_user = [read_json(f / "per_user.json") for f in folders]
    users = per_user[0]["user_id"]
    columns = [dict(zip(p["user_id"], p["ndcg@10"])) for p in per_user]
    return {u: float(np.mean([c[u] for c in columns])) for u in users}


def seed_averaged_test(best: dict[str, Any], row: dict[str, Any]) -> dict[str, Any] | None:
    """Paired test of seed-averaged per-user NDCG@10 when both rows ran the same seeds."""
    if "seeds" not in row or "seeds" not in best or sorted(row["seeds"]) != sorted(best["seeds"]):
        return None
    a, b = seed_averaged_ndcg(best), seed_averaged_ndcg(row)
    users = [u for u in a if u in b]
    va, vb = np.array([a[u] for u in users]), np.array([b[u] for u in users])
    return {"seeds": len(row["seeds"]), "diff": float(vb.mean() - va.mean()),
            "p_value": paired_permutation_test(va, vb)}


def value(metric: dict[str, Any] | float) -> float:
    """metrics.json holds accuracy metrics as {value, ci95} and beyond-accuracy ones as plain numbers."""
    return metric["value"] if isinstance(metric, dict) else metric


def shown(row: dict[str, Any], metric: str) -> str:
    return f"{value(row[metric]):.4f}" if metric in row else "-"


def markdown(rows: list[dict[str, Any]]) -> str:
    head = ["row", "kind", "NDCG@10 [95% CI]", "Recall@10", "NDCG@1", "NDCG@5", "NDCG@20", "Recall@50", "MRR@10",
            "cov@10", "train s", "score s",
            "peak MiB", "ARP@10", "NDCG@10 vs best classic (two-sided p)", "NDCG@10 vs its reference row (p)",
            "NDCG@10 over seeds (sd); vs best classic"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        n = r["ndcg@10"]
        p = (f"{r['diff_vs_best_classic']:+.4f} vs {r['best_classic']} (p {r['p_vs_best_classic']:.4f})"
             if "p_vs_best_classic" in r else "-")
        before = (f"{r['diff_vs_before']:+.4f} vs {r['before']} (p {r['p_vs_before']:.4f})"
                  if "p_vs_before" in r else "-")
        runs = [s["ndcg@10"] for s in r.get("seeds", {}).values()]
        seeds = f"{np.mean(runs):.4f} ± {np.std(runs, ddof=1):.4f} ({len(runs)} seeds)" if len(runs) > 1 else "-"
        if "seed_averaged_vs_best_classic" in r:
            t = r["seed_averaged_vs_best_classic"]
            seeds += f"; seed-averaged {t['diff']:+.4f} (p {t['p_value']:.4f})"
        lines.append(f"| {r['name']} | {r['kind']} | {n['value']:.4f} [{n['ci95'][0]:.4f}, {n['ci95'][1]:.4f}] | "
                     f"{value(r['recall@10']):.4f} | {shown(r, 'ndcg@1')} | {shown(r, 'ndcg@5')} | "
                     f"{shown(r, 'ndcg@20')} | {shown(r, 'recall@50')} | {value(r['mrr@10']):.4f} | "
                     f"{value(r['coverage@10']):.4f} | {r['train_seconds']:g} | {r['score_seconds']:g} | "
                     f"{r['peak_mib']} | {value(r.get('arp@10', float('nan'))):.1f} | {p} | {before} | {seeds} |")
    lines += ["", "The best classic row is the one with the highest test NDCG@10 in this run (the strictest reference "
              "for the LLM rows, chosen on test).", "",
              *([f"Carried over from an earlier run of this bench (not re-measured; paired tests as measured then): "
                 f"{', '.join(r['name'] for r in rows if r.get('carried_over'))}.", ""]
                if any(r.get("carried_over") for r in rows) else []),
              "Rows: " + "; ".join(f"**{r['name']}**: {r['what']}" for r in rows) + ".", "",
              "Each row's commands (train, then `llmrec eval rank`) are its `command` in quality.json."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="runs/ml-100k/dataset", help="Prepared ml-100k dataset folder.")
    parser.add_argument("--out", default="runs/quality", help="Working folder: models, reports, rows, tables.")
    parser.add_argument("--rows", default=None, help="Comma-separated row names (default: all, in order).")
    parser.add_argument("--full", action="store_true", help="GPU budgets: the re-ranker trains on 20k rows, "
                        "generative rows rank with a beam of 50 (Recall@50).")
    parser.add_argument("--publish", default=None, help="Also copy quality.json/.md into this folder.")
    parser.add_argument("--keep", default=None, help="An earlier quality.json: its rows not measured in this run "
                        "are carried over as they are (their paired tests as measured then), marked in the table.")
    parser.add_argument("--seeds", default="", help="Comma-separated extra seeds for the chosen collab rows "
                        "(training noise: NDCG@10 mean and spread over seeds in the table).")
    args = parser.parse_args()
    names = args.rows.split(",") if args.rows else [r.name for r in ROWS]
    unknown = sorted(set(names) - {r.name for r in ROWS})
    if unknown:
        sys.exit(f"unknown rows: {', '.join(unknown)}; valid: {', '.join(r.name for r in ROWS)}")
    root = Path(args.out)
    (root / "rows").mkdir(parents=True, exist_ok=True)
    for row in ROWS:
        saved = root / "rows" / f"{row.name}.json"
        if row.name in names and not saved.exists():
            print(f"[quality] {row.name} ...", flush=True)
            write_json(saved, measure(row, args, root))
        if row.name in names and args.seeds and row.seeded:
            print(f"[quality] {row.name} seeds {args.seeds} ...", flush=True)
            entry = read_json(saved)
            other_seeds(row, entry, [int(s) for s in args.seeds.split(",")], args, root)
            write_json(saved, entry)
    earlier = {r["name"]: {**r, "carried_over": True} for r in read_json(args.keep)} if args.keep else {}
    rows = [read_json(root / "rows" / f"{r.name}.json") if (root / "rows" / f"{r.name}.json").exists()
            else earlier.get(r.name) for r in ROWS]
    rows = [{**r, "what": WHAT.get(r["name"], r["what"])} for r in rows if r is not None]
    paired_tests(rows)
    table = markdown(rows)
    for folder in [root] + ([Path(args.publish)] if args.publish else []):
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "quality.json", rows)
        (folder / "quality.md").write_text(table, encoding="utf-8")
    print(table)
    print(json.dumps({r["name"]: round(r["ndcg@10"]["value"], 4) for r in rows}))


if __name__ == "__main__":
    main()
