"""Preference alignment of an SFT recommender: negative strategies, softmax-DPO on TRL, rounds (recipes/dpo.py)."""
