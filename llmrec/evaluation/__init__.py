"""Evaluation: ranking metrics, confidence intervals, and scoring of ranked lists against a dataset."""

from llmrec.evaluation.metrics import beyond_accuracy, ranking_metrics
from llmrec.evaluation.stats import bootstrap_ci

__all__ = ["beyond_accuracy", "bootstrap_ci", "ranking_metrics"]
