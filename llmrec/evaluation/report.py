"""The human side of a report folder: report.md and PNG plots (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from llmrec.data.dataset import PreparedDataset
    from llmrec.evaluation.result import Evaluation

ACCURACY = ("hit", "recall", "precision", "f1", "ndcg", "mrr", "map")
BEYOND = ("coverage", "gini", "arp", "novelty", "aclt", "popreo")


def write_report_md(path: Path, metrics: dict[str, Any], protocol: str, ks: Sequence[int]) -> None:
    lines = [
        "# Evaluation report",
        "",
        f"Protocol: {protocol}.",
        "",
        "| metric | " + " | ".join(f"@{k}" for k in ks) + " |",
        "|---" * (len(ks) + 1) + "|",
    ]
    for name in ACCURACY:
        cells = []
        for k in ks:
            m = metrics[f"{name}@{k}"]
            cells.append(f"{m['value']:.4f} [{m['ci95'][0]:.4f}, {m['ci95'][1]:.4f}]")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for name in BEYOND:
        values = [metrics.get(f"{name}@{k}") for k in ks]
        lines.append(f"| {name} | " + " | ".join("n/a" if v is None else f"{v:.4f}" for v in values) + " |")
    lines += [
        "",
        "Accuracy metrics: mean over users [95% bootstrap CI over users].",
        "",
        "| count | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in metrics.items() if "@" not in k and k != "protocol"]
    lines += ["", "Plots: `metrics_at_k.png`, `popularity.png`, `ndcg_by_history_length.png`.", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def write_plots(out: Path, result: Evaluation, dataset: PreparedDataset, ks: Sequence[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name in ("recall", "ndcg", "mrr"):
        ax.plot(ks, [result.metrics[f"{name}@{k}"]["value"] for k in ks], marker="o", label=name)
    ax.set(xlabel="K", ylabel="value", title="metric@K")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "metrics_at_k.png", dpi=100)
    plt.close(fig)

    popularity = dataset.items["popularity"].to_numpy()
    recommended = result.ranked[:, : max(ks)]
    held_out = popularity[result.target_codes[result.target_codes >= 0]]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    bins = np.logspace(0, np.log10(max(popularity.max(), 1) + 1), 30)
    for values, label in ((popularity[recommended[recommended >= 0]], "recommended"), (held_out, "held-out targets")):
        if len(values):  # a run that recommended no catalog item still gets the plot, with one histogram
            ax.hist(values + 1, bins=bins, density=True, alpha=0.6, label=label)
    ax.set(xscale="log", xlabel="training popularity + 1", ylabel="density", title="popularity")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "popularity.png", dpi=100)
    plt.close(fig)

    k = 10 if 10 in ks else ks[-1]
    ndcg = result.per_user[f"ndcg@{k}"]
    edges = np.unique(np.quantile(result.history_lengths, np.linspace(0, 1, 6)))
    groups = np.clip(np.searchsorted(edges, result.history_lengths, side="right") - 1, 0, len(edges) - 2)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    labels = [f"{int(edges[g])}-{int(edges[g + 1])}" for g in range(len(edges) - 1)]
    ax.bar(labels, [ndcg[groups == g].mean() if (groups == g).any() else 0 for g in range(len(labels))])
    ax.set(xlabel="history length (quintiles)", ylabel=f"ndcg@{k}", title="NDCG by history length")
    fig.tight_layout()
    fig.savefig(out / "ndcg_by_history_length.png", dpi=100)
    plt.close(fig)
