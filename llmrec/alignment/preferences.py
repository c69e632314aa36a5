"""Preference rows for TRL: an SFT prompt row + rejected items -> prompt, chosen, rejected, rejected_list.

Rows that cannot teach a preference over items are dropped and counted, never trained on: a row whose
answer is not its target item (another family of a mixture: a rating, a yes/no), no rejected item, or the
chosen item among the rejected ones (the loss would push the target down and up at once)."""

from __future__ import annotations

from typing import Any

from llmrec.indexing.item_index import ItemIndex
from llmrec.prompts.render import preference_columns


def answers_with_target(rows: Any, index: ItemIndex) -> list[bool]:
    """Per SFT row: whether its answer is its target item (other families of a mixture answer a rating, a
    yes/no, ...): only those rows can teach anything about ranking items."""
    return [a[-1]["content"] == index.tokens_of[t] for t, a in zip(rows["target_item_id"], rows["completion"])]


def preference_rows(rows: Any, negatives: list[list[str]], index: ItemIndex) -> tuple[Any, dict[str, int]]:
    """(R,) SFT rows (datasets.Dataset) and per row its rejected item ids -> (preference rows, skip counts).
    `rejected_item_ids` names the negatives for inspection."""
    keep, skipped = [], {"not_an_item_answer": 0, "no_negatives": 0, "chosen_among_rejected": 0}
    for r, (target, is_item, negs) in enumerate(zip(rows["target_item_id"], answers_with_target(rows, index),
                                                    negatives)):
        if not is_item:
            skipped["not_an_item_answer"] += 1
        elif not negs:
            skipped["no_negatives"] += 1
        elif target in negs:
            skipped["chosen_among_rejected"] += 1
        else:
            keep.append(r)
    kept = rows.select(keep)
    columns = [preference_columns(answer, [index.tokens_of[n] for n in negatives[r]])
               for answer, r in zip(kept["completion"], keep)]
    kept = kept.remove_columns(["completion"]).add_column("rejected_item_ids", [negatives[r] for r in keep])
    for name in ("chosen", "rejected", "rejected_list"):
        kept = kept.add_column(name, [c[name] for c in columns])
    return kept, skipped
