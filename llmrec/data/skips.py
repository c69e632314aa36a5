"""A ledger of everything a reader or filter left out, so nothing is dropped silently."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


# The reason suffix of a malformed optional value: the value became null, its row was kept.
MISSING = "_stored_as_missing"


@dataclass
class SkipLog:
    """Counts of skipped lines and dropped rows, keyed by (file or stage, reason).

    `first_line` keeps the first offending line number so a user can look at an example.
    """

    entries: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def add(self, where: str, reason: str, count: int, first_line: int | None = None) -> None:
        if count <= 0:
            return
        entry = self.entries.setdefault((where, reason), {"where": where, "reason": reason, "count": 0})
        entry["count"] += int(count)
        if first_line is not None and "first_line" not in entry:
            entry["first_line"] = int(first_line)

    def total(self) -> int:
        return sum(e["count"] for e in self.entries.values())

    def as_list(self) -> list[dict[str, Any]]:
        return list(self.entries.values())
