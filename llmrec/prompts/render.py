"""Render un-rendered rows (positions into the interaction arrays) into chat rows, batched for datasets.map."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from llmrec.prompts.templates import Family, Template


@dataclass
class RenderContext:
    """Everything a row needs besides its own columns; shared by all rows and picklable for num_proc."""

    item_ids: list[str]
    ident: list[str]  # what the model must output for each catalog item
    shown: list[str]  # how items appear inside prompts (--item_format)
    titles: list[str]
    texts: list[str]
    index_tokens: list[str] | None
    inter_item: np.ndarray  # (N,) catalog position per interaction, sorted by user then time
    inter_rating: np.ndarray  # (N,)
    inter_user: np.ndarray  # (N,)
    reviews: list[str] | None


def rating_text(r: float) -> str:
    return str(int(r)) if float(r).is_integer() else f"{r:.1f}"


def row_fields(task: str, ctx: RenderContext, target: int, start: int, end: int, item: int,
               negatives: list[int], shuffle: int, s: dict[str, Any],
               given: bool = False) -> tuple[dict[str, Any], list[int]]:
    """Template fields for one row, and the candidate list (catalog positions) when the task has one.
    `given`: `negatives` is already the whole candidate list (another recommender's), not target + negatives."""
    hist = ctx.inter_item[start:end]
    shown = [ctx.shown[i] for i in hist]
    user = str(ctx.inter_user[target]) if target >= 0 else ""
    if task == "alignment":
        return {"item_title": ctx.titles[item], "item_index": ctx.index_tokens[item], "item_text": ctx.texts[item]}, []
    rating = float(ctx.inter_rating[target])
    f: dict[str, Any] = {"user_id": user}
    if task in ("sequential", "candidates", "zeroshot", "rerank"):
        f.update(history=shown, n_history=len(shown), target=ctx.ident[item])
    if task in ("zeroshot", "rating", "rerank"):  # unrated items (partly rated data) are not "rated"
        f["rated_history"] = [{"item": x, "rating": rating_text(r)}
                              for x, r in zip(shown, ctx.inter_rating[start:end]) if not np.isnan(r)]
    if task in ("candidates", "rerank"):
        cands = list(negatives) if given else [item, *negatives]
        np.random.default_rng(shuffle).shuffle(cands)
        f.update(candidates=[ctx.shown[i] for i in cands], n_candidates=len(cands), k=s["k"])
        return f, cands
    if task == "zeroshot":
        f["k"] = s["k"]
    elif task == "preference":
        liked = [x for x, r in zip(shown, ctx.inter_rating[start:end]) if r >= s["positive_threshold"]]
        disliked = [x for x, r in zip(shown, ctx.inter_rating[start:end]) if r < s["positive_threshold"]]
        f.update(liked=liked, disliked=disliked, item=ctx.shown[item],
                 target="Yes" if rating >= s["positive_threshold"] else "No")
    elif task == "rating":
        f.update(item=ctx.shown[item], target=rating_text(rating))
    elif task == "explanation":
        f.update(item=ctx.shown[item], rating=rating_text(rating), target=ctx.reviews[target])
    return f, []


def _prompt_length(tokenizer: Any, messages: list[dict[str, str]]) -> int:
    return len(tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=False))


def render_one(template: Template, task: str, ctx: RenderContext, cols: dict[str, Any], s: dict[str, Any],
               tokenizer: Any) -> dict[str, Any]:
    start, end = int(cols["_start"]), int(cols["_end"])
    system = [{"role": "system", "content": s["system_prompt"]}] if s["system_prompt"] else []
    while True:  # drop the oldest history item until the prompt fits (never the target)
        fields, cands = row_fields(task, ctx, int(cols["_target"]), start, end, int(cols["_item"]),
                                   list(cols["_negatives"]), int(cols["_shuffle"]), s, bool(cols["_given"]))
        text, target = template.render(fields)
        prompt = [*system, {"role": "user", "content": text}]
        if not s["max_prompt_tokens"] or tokenizer is None or start >= end:
            break
        if _prompt_length(tokenizer, prompt) <= s["max_prompt_tokens"]:
            break
        start += 1
    out = {
        "prompt": prompt,
        "completion": [{"role": "assistant", "content": target}],
        "target_item_id": ctx.item_ids[int(cols["_item"])],
        "history_item_ids": [ctx.item_ids[i] for i in ctx.inter_item[start:end]],
        "candidate_item_ids": [ctx.item_ids[i] for i in cands],
        "n_dropped_history": start - int(cols["_start"]),
    }
    if s["format"] == "preference":
        out.update(preference_columns(out["completion"], [ctx.ident[i] for i in cols["_negatives"]]))
    if s["sft_style"] == "messages":
        out["messages"] = out.pop("prompt") + out.pop("completion")
    return out


def preference_columns(completion: list[dict[str, str]], negatives: list[str]) -> dict[str, Any]:
    """TRL's preference columns: chosen (the completion), rejected (the first negative as an answer) and, for
    softmax-DPO, rejected_list (every negative as the string the model writes)."""
    return {"chosen": completion, "rejected": [{"role": "assistant", "content": negatives[0]}],
            "rejected_list": negatives}


def render_batch(batch: dict[str, list], ctx: RenderContext, families: dict[str, Family], tokenizer: Any,
                 config: dict[str, Any]) -> dict[str, list]:
    templates = {(f.name, t.id): (t, f.task) for f in families.values() for t in f.templates}
    rows = []
    for r in range(len(batch["template_id"])):
        cols = {k: v[r] for k, v in batch.items()}
        template, task = templates[(cols["family"], cols["template_id"])]
        rows.append(render_one(template, task, ctx, cols, config, tokenizer))
    return {k: [row[k] for row in rows] for k in rows[0]} if rows else {}
