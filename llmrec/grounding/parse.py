"""Split an LLM's answer into candidate item mentions: numbered or bulleted lists, JSON, or plain lines."""

from __future__ import annotations

import json
import re

_MARKER = re.compile(r"^\s*(?:\d{1,3}\s*[.):\]-]|[-*•+·]|#\d+[.:)]?)\s+")
_EMPHASIS = re.compile(r"^[\s*_\"'`“”‘’]+|[\s*_\"'`“”‘’]+$")
# Models echo the prompt's rating format after a title: "Heat (1995) (4/5)", "Heat - 5 stars", "Heat: 4.5/5".
_RATING_SUFFIX = re.compile(r"\s*(?:[-:–]\s*|[(\[]\s*)?\d(?:\.\d)?\s*(?:/\s*5|/\s*10|stars?|★+)\s*[)\]]?\s*$",
                            re.IGNORECASE)


def parse_list(answer: str) -> list[str]:
    """Item mentions in answer order. A JSON array (of strings, or of objects with a `title`) is read as
    JSON; otherwise each numbered/bulleted line is one mention, and without markers each non-empty line is.
    Markdown emphasis and quotes around a mention are removed, and so is a trailing rating such as
    "(4/5)" or "- 5 stars" (models copy the rated-history format); the text itself is kept for grounding.
    """
    text = answer.strip()
    block = re.search(r"\[.*\]", text, re.DOTALL)
    if block:
        try:
            parsed = json.loads(block.group(0))
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, list):
            mentions = [p.get("title") if isinstance(p, dict) else p for p in parsed]
            return [_clean(m) for m in mentions if isinstance(m, str) and _clean(m)]
    lines = [line for line in text.splitlines() if line.strip()]
    marked = [line for line in lines if _MARKER.match(line)]
    chosen = [_MARKER.sub("", line, count=1) for line in marked] if marked else lines
    return [m for m in (_clean(line) for line in chosen) if m]


def _clean(mention: str) -> str:
    return _EMPHASIS.sub("", _RATING_SUFFIX.sub("", _EMPHASIS.sub("", mention))).strip()
