"""Recommendation-oriented RL: GRPO on TRL with trie-constrained beam rollouts and ranking rewards (recipes/grpo.py)."""
