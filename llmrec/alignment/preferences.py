"""Preference rows for TRL: an SFT prompt row + rejected items -> prompt, chosen, rejected, rejected_list.

Rows that cannot teach a preference are dropped and counted, never trained on: no rejected item, or the
chosen answer among the rejected ones (the loss would push the target down and up at once)."""

from __future__ import annotations

from typing import Any

from llmrec.indexing.item_index import ItemIndex


def preference_rows(rows: Any, negatives: list[list[str]], index: ItemIndex) -> tuple[Any, dict[str, int]]:
    """(R,) SFT rows (datasets.Dataset) and per row its rejected item ids -> (preference rows, skip counts).
    `rejected` is the first negative (TRL's DPO); `rejected_list` holds all of them as the strings the model
    writes (softmax-DPO); `rejected_item_ids` names them for inspection."""
    keep, skipped = [], {"no_negatives": 0, "chosen_among_rejected": 0}
    for r, (target, negs) in enumerate(zip(rows["target_item_id"], negatives)):
        if not negs:
            skipped["no_negatives"] += 1
        elif target in negs:
            skipped["chosen_among_rejected"] += 1
        else:
            keep.append(r)
    kept = rows.select(keep)
    shown = [[index.tokens_of[i] for i in negatives[r]] for r in keep]
    kept = kept.add_column("rejected_item_ids", [negatives[r] for r in keep])
    kept = kept.add_column("rejected_list", shown)
    kept = kept.add_column("rejected", [[{"role": "assistant", "content": s[0]}] for s in shown])
    return kept.rename_column("completion", "chosen"), skipped
