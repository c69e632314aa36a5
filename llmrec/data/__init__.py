"""Datasets: readers for raw formats, processing and splitting, and the prepared dataset folder."""

from llmrec.data.dataset import PreparedDataset
from llmrec.data.prepare import PrepareConfig, prepare

__all__ = ["PrepareConfig", "PreparedDataset", "prepare"]
