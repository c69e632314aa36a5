"""An LLM re-ranker over a classic retriever's candidates (LlamaRec, Yue et al. 2023; RecRanker, Luo et al. 2024).

The retriever (`llmrec.collab`) proposes each user's top-N; the LLM reads a short history and the lettered
candidates and scores every candidate in one forward pass, no generation (`verbalizer`: the letters'
next-token logits, or a readout on each candidate's own line); the final order fuses the retriever's
standardised score with the LLM's.
"""

from llmrec.rerank.fusion import choose_lambda, fuse, standardize
from llmrec.rerank.rows import RerankRow, eval_rows, train_rows
from llmrec.rerank.verbalizer import SCORINGS, Verbalizer, letter_ids

__all__ = ["SCORINGS", "RerankRow", "Verbalizer", "choose_lambda", "eval_rows", "fuse", "letter_ids", "standardize",
           "train_rows"]
