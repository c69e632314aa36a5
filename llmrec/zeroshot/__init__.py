"""Zero-shot evaluation of an LLM as a recommender: scenarios, asking (cached), grounding, scoring."""

from llmrec.zeroshot.run import ZeroShotConfig, run_zeroshot

__all__ = ["ZeroShotConfig", "run_zeroshot"]
