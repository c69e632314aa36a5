"""Grounding: an LLM's free-text answer -> catalog items (exact, fuzzy, embedding nearest neighbour)."""

from llmrec.grounding.ground import Grounded, TitleGrounder, select_gamma
from llmrec.grounding.parse import parse_list

__all__ = ["Grounded", "TitleGrounder", "parse_list", "select_gamma"]
