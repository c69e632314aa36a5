"""Scoring a split with the re-ranker: the retriever alone, a random order, the LLM's own order and the
fused order of the same candidates, each through `llmrec.evaluation.rank.evaluate` (same metrics, CIs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from llmrec.artifacts import write_jsonl
from llmrec.data.dataset import PreparedDataset
from llmrec.evaluation.baselines import baseline_rankings
from llmrec.evaluation.rank import RankEvalConfig, evaluate
from llmrec.evaluation.result import Evaluation
from llmrec.evaluation.stats import paired_permutation_test
from llmrec.rerank.fusion import choose_lambda, fuse
from llmrec.rerank.rows import RerankRow
from llmrec.rerank.verbalizer import Verbalizer, render_prompt


def encode_rows(verbalizer: Verbalizer, rows: list[RerankRow], titles: list[str], show_ranks: bool,
                system: str | None) -> list[dict[str, list[int]]]:
    """Each row's prompt, encoded for the verbalizer ({"input_ids"}, and "positions" for inline scoring)."""
    return verbalizer.encode([render_prompt([titles[i] for i in r.history], [titles[i] for i in r.candidates],
                                            r.ranks if show_ranks else None, system) for r in rows])


def llm_scores(model: Any, verbalizer: Verbalizer, rows: list[RerankRow], titles: list[str], show_ranks: bool,
               system: str | None, batch_size: int = 16, orders: int = 2) -> np.ndarray:
    """(U, O, N) LLM scores of each row's candidates (in the row's order) from each of `orders` orderings of
    the prompt: as given, then reversed. Their mean over O counters the position bias."""
    n = len(rows[0].candidates)
    total = np.zeros((len(rows), orders, n))
    for flip in range(orders):
        order = np.arange(n)[::-1] if flip else np.arange(n)
        shown = [RerankRow(r.user_id, r.history, [r.candidates[i] for i in order], [r.ranks[i] for i in order],
                           [r.retriever_scores[i] for i in order], -1) for r in rows]
        scores = verbalizer.scores(model, encode_rows(verbalizer, shown, titles, show_ranks, system), batch_size,
                                   progress=True).numpy()  # (U, N) in the shown order
        total[:, flip, order] = scores
    return total


def order_records(rows: list[RerankRow], order: np.ndarray, item_ids: list[str]) -> list[dict[str, Any]]:
    return [{"user_id": r.user_id, "ranked_items": [item_ids[r.candidates[i]] for i in o]} for r, o in zip(rows, order)]


def candidate_orders(rows: list[RerankRow], llm: np.ndarray, lam: float, seed: int = 0,
                     untrained: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """(U, N) orders of each row's candidates, keyed by the name the summary prints: the retriever's, a random
    one, the untrained model's (when its (U, O, N) `untrained` scores are given), the LLM's own from the
    first prompt ordering alone (when `llm`, (U, O, N), has several), the LLM's own averaged over orderings,
    and the fused one (its key ends in its lambda)."""
    retriever = np.array([r.retriever_scores for r in rows])
    n = retriever.shape[1]
    rng = np.random.default_rng(seed)
    orders = {"retriever": np.tile(np.arange(n), (len(rows), 1)),
              "random order": np.stack([rng.permutation(n) for _ in rows])}
    if untrained is not None:
        orders["untrained llm order"] = by_score(untrained.mean(1))
    if llm.shape[1] > 1:
        orders["llm order, 1 ordering"] = by_score(llm[:, 0])
    orders["llm order"] = by_score(llm.mean(1))
    orders[f"fused (lambda {lam:g})"] = fuse(retriever, llm.mean(1), lam)
    return orders


def by_score(scores: np.ndarray) -> np.ndarray:
    """(U, N) scores -> (U, N) candidate indices, best first (ties keep the retriever's order)."""
    return np.argsort(-scores, axis=1, kind="stable")


ORDER_FILES = {"retriever": "retriever", "random order": "random", "untrained llm order": "untrained",
               "llm order, 1 ordering": "llm-1-ordering", "llm order": "llm", "fused": "fused"}


def compare_orders(dataset: PreparedDataset, rows: list[RerankRow], orders: dict[str, np.ndarray], split: str,
                   save_to: Path | None = None, sampled: bool = False) -> dict[str, Evaluation]:
    """Most-popular, then each order of the same candidates, scored on `split` (`sampled`: over the rows' users
    alone, a sample of the split's); with `save_to`, the orders are also written there as
    rankings-{split}-{retriever,random,llm,fused}.jsonl, files `llmrec eval rank` scores the same way."""
    config = RankEvalConfig(data=str(dataset.path), output="", split=split, ks=[5, 10, 20])
    users = {r.user_id for r in rows} if sampled else None
    item_ids = dataset.items["item_id"].to_pylist()
    n = len(rows[0].candidates)
    results = {"most-popular": evaluate(dataset, baseline_rankings(dataset, split, n, "most_popular"), config, users)}
    for name, order in orders.items():
        records = order_records(rows, order, item_ids)
        if save_to is not None:
            write_jsonl(save_to / f"rankings-{split}-{ORDER_FILES[name.split(' (')[0]]}.jsonl", records)
        results[name] = evaluate(dataset, records, config, users)
    return results


def pick_lambda(rows: list[RerankRow], llm: np.ndarray, grid: list[float]) -> tuple[float, dict[float, float]]:
    """`llm`: (U, O, N) scores per ordering; fusion uses their mean."""
    retriever = np.array([r.retriever_scores for r in rows])
    return choose_lambda(retriever, llm.mean(1), np.array([r.label for r in rows]), grid)


REFERENCES = ("retriever", "random order", "most-popular")


def summary(results: dict[str, Evaluation]) -> list[dict[str, Any]]:
    """One line per result: metrics with CIs, and paired p-values (NDCG@10) against each of REFERENCES,
    keyed p_vs_retriever, p_vs_random_order, p_vs_most_popular."""
    out = []
    for name, ev in results.items():
        line = {"name": name, **{k: ev.metrics[k] for k in ("ndcg@5", "ndcg@10", "ndcg@20", "recall@10", "mrr@10")}}
        for ref_name, ref in ((n, results[n]) for n in REFERENCES):
            if ref is not ev:
                line[f"p_vs_{ref_name.replace(' ', '_').replace('-', '_')}"] = paired_permutation_test(
                    ref.per_user["ndcg@10"], ev.per_user["ndcg@10"])
        out.append(line)
    return out
