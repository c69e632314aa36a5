"""What scoring ranked lists produces (`llmrec.evaluation.rank.evaluate`) and reports and plots read.

A module of its own so that `report` needs nothing from `rank`, which writes reports: no import circle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Evaluation:
    metrics: dict[str, Any]  # flat: "ndcg@10" -> {"value", "ci95"}; beyond-accuracy -> value; counts
    per_user: dict[str, np.ndarray]  # metric -> (U,)
    users: list[str]
    lists: list[list[str]]  # cleaned lists, unknown items kept in place
    targets: list[str]
    history_lengths: np.ndarray  # (U,)
    ranked: np.ndarray  # (U, K) item codes, -1 where no catalog item stands
    target_codes: np.ndarray  # (U,) item code of each target, -2 if it is not in the catalog
