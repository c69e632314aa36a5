"""Classic recommenders: SASRec, BPR-MF and EASE on a prepared dataset's training split.

They are the baselines of every quality table, the candidate retrievers of LLM re-rankers, and the user
encoders / reward models of later trainers. Each scores the whole catalog for a batch of users
(`CollabModel.score`); `train_collab` fits one and writes a folder that `load_collab` and
`llmrec eval rank --checkpoint` read.
"""

from llmrec.collab.base import CollabModel
from llmrec.collab.bpr import BPR
from llmrec.collab.ease import EASE
from llmrec.collab.rank import ndcg_at_k, top_k
from llmrec.collab.sasrec import SASRec
from llmrec.collab.sequences import CollabData, SplitHistories
from llmrec.collab.checkpoint import load_collab
from llmrec.collab.train import CollabConfig, train_collab

__all__ = ["BPR", "EASE", "CollabConfig", "CollabData", "CollabModel", "SASRec", "SplitHistories", "load_collab",
           "ndcg_at_k", "top_k", "train_collab"]
