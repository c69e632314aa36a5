"""Scoring a split with the re-ranker: the retriever alone, a random order, the LLM's own order and the
fused order of the same candidates, each through `llmrec.evaluation.rank.evaluate` (same metrics, CIs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from llmrec.artifacts import write_jsonl
from llmrec.data.dataset import PreparedDataset
from llmrec.evaluation.rank import RankEvalConfig, evaluate
from llmrec.evaluation.result import Evaluation
from llmrec.evaluation.stats import paired_permutation_test
from llmrec.rerank.fusion import choose_lambda, fuse
from llmrec.rerank.rows import RerankRow
from llmrec.rerank.verbalizer import letter_scores, render_prompt


def tokenize_rows(tokenizer: Any, rows: list[RerankRow], titles: list[str], show_ranks: bool,
                  system: str | None) -> list[list[int]]:
    conversations = [render_prompt([titles[i] for i in r.history], [titles[i] for i in r.candidates],
                                   r.ranks if show_ranks else None, system) for r in rows]
    return tokenizer.apply_chat_template(conversations, tokenize=True, add_generation_prompt=True, return_dict=False)


def llm_scores(model: Any, tokenizer: Any, rows: list[RerankRow], titles: list[str], show_ranks: bool,
               system: str | None, batch_size: int = 16, orders: int = 2) -> np.ndarray:
    """(U, N) LLM scores of each row's candidates (in the row's order), averaged over `orders` orderings of
    the prompt: as given, then reversed, against the letters' position bias."""
    n = len(rows[0].candidates)
    total = np.zeros((len(rows), n))
    for flip in range(orders):
        order = np.arange(n)[::-1] if flip else np.arange(n)
        shown = [RerankRow(r.user_id, r.history, [r.candidates[i] for i in order], [r.ranks[i] for i in order],
                           [r.retriever_scores[i] for i in order], -1) for r in rows]
        scores = letter_scores(model, tokenizer, tokenize_rows(tokenizer, shown, titles, show_ranks, system), n,
                               batch_size, progress=True).numpy()  # (U, N) in the shown order
        total[:, order] += scores
    return total / orders


def order_records(rows: list[RerankRow], order: np.ndarray, item_ids: list[str]) -> list[dict[str, Any]]:
    return [{"user_id": r.user_id, "ranked_items": [item_ids[r.candidates[i]] for i in o]} for r, o in zip(rows, order)]


def candidate_orders(rows: list[RerankRow], llm: np.ndarray, lam: float, seed: int = 0) -> dict[str, np.ndarray]:
    """(U, N) orders of each row's candidates: the retriever's, a random one, the LLM's own and the fused one,
    keyed by the name the summary prints (the fused key ends in its lambda)."""
    retriever = np.array([r.retriever_scores for r in rows])
    n = retriever.shape[1]
    rng = np.random.default_rng(seed)
    return {"retriever": np.tile(np.arange(n), (len(rows), 1)),
            "random order": np.stack([rng.permutation(n) for _ in rows]),
            "llm order": np.argsort(-llm, axis=1, kind="stable"),
            f"fused (lambda {lam:g})": fuse(retriever, llm, lam)}


def compare_orders(dataset: PreparedDataset, rows: list[RerankRow], orders: dict[str, np.ndarray], split: str,
                   save_to: Path | None = None) -> dict[str, Evaluation]:
    """Each order of the same candidates, scored on `split`; with `save_to`, also written there as
    rankings-{split}-{retriever,random,llm,fused}.jsonl, files `llmrec eval rank` scores the same way."""
    config = RankEvalConfig(data=str(dataset.path), output="", split=split, ks=[5, 10, 20])
    item_ids = dataset.items["item_id"].to_pylist()
    results = {}
    for name, order in orders.items():
        records = order_records(rows, order, item_ids)
        if save_to is not None:
            write_jsonl(save_to / f"rankings-{split}-{name.split()[0]}.jsonl", records)
        results[name] = evaluate(dataset, records, config)
    return results


def pick_lambda(rows: list[RerankRow], llm: np.ndarray, grid: list[float]) -> tuple[float, dict[float, float]]:
    retriever = np.array([r.retriever_scores for r in rows])
    return choose_lambda(retriever, llm, np.array([r.label for r in rows]), grid)


def summary(results: dict[str, Evaluation]) -> list[dict[str, Any]]:
    """One line per order: metrics with CIs, and paired p-values against the retriever and the random order."""
    base, random = results["retriever"], results["random order"]
    out = []
    for name, ev in results.items():
        line = {"name": name, **{k: ev.metrics[k] for k in ("ndcg@5", "ndcg@10", "ndcg@20", "recall@10", "mrr@10")}}
        for ref_name, ref in (("retriever", base), ("random order", random)):
            if ref is not ev:
                line[f"p_vs_{ref_name.replace(' ', '_')}"] = paired_permutation_test(
                    ref.per_user["ndcg@10"], ev.per_user["ndcg@10"])
        out.append(line)
    return out
