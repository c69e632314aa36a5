"""`llmrec prompts build`: a dataset folder (+ item index) -> chat datasets for TRL, one per split.

Rows (all splits share the columns; valid/test hold one row per user of the first family):
  prompt, completion      conversational lists of {role, content} (TRL prompt-completion; loss on the
                          completion only). With --sft_style messages: one `messages` column instead.
  chosen, rejected, rejected_list   with --format preference (DPO; rejected_list for softmax-DPO).
  user_id, target_item_id, template_id, family, split, history_item_ids, candidate_item_ids
Items are shown by --item_format: `id` (the index's token string, or the title with year when no index
is given), `title`, or `both`; targets are always the id the model must generate.
"""

from __future__ import annotations

import dataclasses
import sys
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from llmrec.artifacts import cache_dir
from llmrec.data.dataset import PreparedDataset
from llmrec.errors import LlmrecError, check_at_least
from llmrec.indexing.embeddings import item_texts
from llmrec.indexing.item_index import ItemIndex
from llmrec.indexing.p5 import title_strings
from llmrec.prompts.render import RenderContext, render_batch
from llmrec.prompts.rows import item_positions, sample_negatives, user_starts, window_rows
from llmrec.prompts.templates import Family, load_family, need_words, needs_none

ITEM_TARGET_TASKS = ("sequential", "candidates", "zeroshot")
TARGET_RATING_TASKS = ("preference", "rating", "explanation")  # rows show the target's own rating
SPILL_ROWS = 500_000


@dataclass
class PromptBuildConfig:
    data: str = field(metadata={"help": "Prepared dataset folder (from `llmrec data prepare`)."})
    output: str | None = field(default=None, metadata={"help": "Folder for the datasets (Arrow + JSONL)."})
    index: str | None = field(default=None, metadata={"help": "Item index folder; default: titles with year."})
    families: list[str] = field(
        default_factory=lambda: ["sequential"],
        metadata={"help": "Prompt families (shipped names or .yaml paths); the first one gives valid/test rows."},
    )
    weights: list[float] | None = field(
        default=None,
        metadata={"help": "Per family, a multiplier on its training rows (0.5 = half, sampled; 2 = twice). Default 1."},
    )
    item_format: Literal["id", "title", "both"] = field(
        default="id", metadata={"help": "How items appear in prompts: the index id, the title, or both."}
    )
    format: Literal["sft", "preference"] = field(
        default="sft", metadata={"help": "sft: prompt/completion. preference: adds chosen/rejected/rejected_list."}
    )
    sft_style: Literal["prompt_completion", "messages"] = field(
        default="prompt_completion", metadata={"help": "SFT columns: prompt + completion, or one messages list."}
    )
    system_prompt: str | None = field(default=None, metadata={"help": "A system message put before every prompt."})
    max_history: int = field(default=20, metadata={"help": "Most recent history items shown per row."})
    min_history: int = field(default=1, metadata={"help": "Training windows need at least this many earlier items."})
    n_candidates: int = field(default=20, metadata={"help": "candidates family: list size (target + negatives)."})
    candidates_from: str | None = field(
        default=None, metadata={"help": "candidates/rerank families: a model folder with candidates-{split}.jsonl "
                                "(llmrec train collab --candidates N) instead of random negatives. Training rows get "
                                "the target in place of the last candidate when it is missing; valid/test rows get "
                                "the list as it is."})
    n_negatives: int = field(default=1, metadata={"help": "preference format: rejected items per row."})
    positive_threshold: float = field(default=4.0, metadata={"help": "Ratings >= this count as liked (yes/no)."})
    k: int = field(default=50, metadata={"help": "zeroshot family: how many recommendations to ask for."})
    eval_template: str | None = field(
        default=None, metadata={"help": "Template id for valid/test rows (an unseen one tests generalisation)."}
    )
    max_train_rows: int | None = field(default=None, metadata={"help": "Seeded sample of training rows (all)."})
    max_eval_users: int | None = field(default=None, metadata={"help": "Seeded sample of valid/test users (all)."})
    tokenizer: str | None = field(default=None, metadata={"help": "Tokenizer for --max_prompt_tokens (model name)."})
    max_prompt_tokens: int | None = field(
        default=None, metadata={"help": "Drop the oldest history until the chat prompt fits; the target is never cut."}
    )
    num_proc: int = field(default=1, metadata={"help": "Processes for rendering (datasets.map)."})
    prompt_seed: int = field(default=0, metadata={"help": "Seed for templates, negatives, candidates and samples."})
    overwrite: bool = field(default=False, metadata={"help": "Replace --output if it exists."})


def check_sizes(config: PromptBuildConfig) -> None:
    """Counts below their minimum would build nonsense rows (a negative history slice) or fail deep inside."""
    check_at_least(config, {"max_history": 1, "min_history": 0, "n_candidates": 1, "n_negatives": 1, "k": 1,
                            "num_proc": 1})


def build_prompt_datasets(config: PromptBuildConfig, dataset: PreparedDataset | None = None,
                          index: ItemIndex | None = None, tokenizer: Any = None):
    """-> datasets.DatasetDict with train, valid and test splits, rendered."""
    import datasets

    check_sizes(config)
    ds = dataset or PreparedDataset.load(config.data)
    if index is None and config.index:
        index = ItemIndex.load(config.index)
    if index is not None:
        index.check_dataset(ds.items, config.index or "index")
    families = [load_family(f) for f in config.families]
    if any(f.task == "rerank" for f in families) and not config.candidates_from:
        raise LlmrecError("the rerank family needs another recommender's candidates: pass --candidates_from "
                          "MODEL_DIR (llmrec train collab --candidates N)")
    if config.candidates_from and config.format == "preference":
        raise LlmrecError("--candidates_from builds candidate lists, not preference pairs: use --format sft")
    weights = config.weights or [1.0] * len(families)
    if len(weights) != len(families):
        raise LlmrecError(f"--weights has {len(weights)} values for {len(families)} families")
    fitted, notes = fit_families(families, ds, config.eval_template)
    for note in notes:
        print(note, file=sys.stderr)
    weights = [w for f, w in zip(families, weights) if f.name in {g.name for g in fitted}]
    families = fitted
    if config.format == "preference" and families[0].task not in ITEM_TARGET_TASKS:
        raise LlmrecError(f"--format preference needs an item-target family first, not {families[0].name}")
    if tokenizer is None and config.max_prompt_tokens:
        if not config.tokenizer:
            raise LlmrecError("--max_prompt_tokens needs --tokenizer")
        from transformers import AutoTokenizer

        from llmrec.hub.resolve import resolve_model

        tokenizer = AutoTokenizer.from_pretrained(resolve_model(config.tokenizer))
    context = make_context(ds, index, config)
    rng = np.random.default_rng(config.prompt_seed)
    out = {}
    for split in ("train", "valid", "test"):
        tables = []
        for fam, w in zip(families, weights) if split == "train" else [(families[0], 1.0)]:
            tables.append(family_rows(fam, split, w, ds, context, config, rng))
        rows = pa.concat_tables([t for t in tables if t.num_rows]) if any(t.num_rows for t in tables) else tables[0]
        cap = config.max_train_rows if split == "train" else config.max_eval_users
        if cap is not None and rows.num_rows > cap:
            rows = rows.take(np.sort(rng.choice(rows.num_rows, cap, replace=False)))
        if split == "train" and rows.num_rows == 0:
            raise LlmrecError(f"{ds.path}: no training rows (users need > {config.min_history} training items)")
        # Large outputs go to an Arrow file (memory-mapped) instead of RAM: 20M rendered rows are ~10 GB.
        spill = str(cache_dir("prompts") / f"{split}-{uuid.uuid4().hex}.arrow") if rows.num_rows > SPILL_ROWS else None
        out[split] = datasets.Dataset(rows).map(
            render_batch, batched=True, cache_file_name=spill,
            num_proc=config.num_proc if config.num_proc > 1 and rows.num_rows > 1000 else None,
            remove_columns=[c for c in rows.column_names if c.startswith("_")],
            fn_kwargs={"ctx": context, "families": {f.name: f for f in families}, "tokenizer": tokenizer,
                       "config": _render_settings(config)},
            desc=f"rendering {split}",
        )
    return datasets.DatasetDict(out)


def fit_families(families: list[Family], ds: PreparedDataset,
                 eval_template: str | None = None) -> tuple[list[Family], list[str]]:
    """The families `ds` can fill, each cut to the templates it can fill (`Template.needs` against
    `ds.provides`), and notes on what was left out. A family asked for alone that the data cannot fill is an
    error; of several, such families are skipped and counted (a mixture should not fail over one member)."""
    provided = ds.provides
    fitted = [f.usable(provided) for f in families]
    fillable = [any(t.seen for t in f.templates) for f in fitted]
    if not all(fillable) and (len(families) == 1 or not any(fillable)):
        fam = families[fillable.index(False)]
        raise LlmrecError(f"{ds.path}: the {fam.name} family {needs_none(fam.lacking(provided))}; choose "
                          "families it can fill, such as sequential or candidates")
    if eval_template and not fillable[0]:  # the held-out splits render with the first family's template
        raise LlmrecError(f"{ds.path}: --eval_template {eval_template} belongs to the {families[0].name} family, "
                          f"which {needs_none(families[0].lacking(provided))}")
    if eval_template and not any(t.id == eval_template for t in fitted[0].templates):
        template = next((t for t in families[0].templates if t.id == eval_template), None)
        if template is not None:
            raise LlmrecError(f"{ds.path}: --eval_template {eval_template} {needs_none(template.needs - provided)}; "
                              f"its family can use {', '.join(t.id for t in fitted[0].templates)}")
    notes = []
    skipped = [f for f, ok in zip(families, fillable) if not ok]
    if skipped:
        by_need: dict[str, list[str]] = {}
        for f in skipped:
            by_need.setdefault(need_words(f.lacking(provided)), []).append(f.name)
        reasons = "; ".join(f"{', '.join(names)} (need{'s' if len(names) == 1 else ''} {need})"
                            for need, names in by_need.items())
        notes.append(f"skipped {len(skipped)} of {len(families)} prompt families this dataset cannot fill: {reasons}")
    for f, g, ok in zip(families, fitted, fillable):
        if ok and len(g.templates) < len(f.templates):
            notes.append(f"{f.name}: {len(f.templates) - len(g.templates)} of {len(f.templates)} templates left out "
                         f"(they need {need_words(f.lacking(provided))})")
    return [g for g, ok in zip(fitted, fillable) if ok], notes


def _render_settings(c: PromptBuildConfig) -> dict[str, Any]:
    return {"format": c.format, "sft_style": c.sft_style, "system_prompt": c.system_prompt,
            "max_prompt_tokens": c.max_prompt_tokens, "positive_threshold": c.positive_threshold, "k": c.k}


def make_context(ds: PreparedDataset, index: ItemIndex | None, c: PromptBuildConfig) -> RenderContext:
    titles, _ = title_strings(ds.items)
    ident = index.tokens if index is not None else titles
    shown = {"id": ident, "title": titles, "both": [f"{i} {t}" if i != t else t for i, t in zip(ident, titles)]}
    inter = ds.interactions
    reviews = inter["review"].to_pylist() if "review" in inter.column_names else None
    return RenderContext(
        item_ids=ds.items["item_id"].to_pylist(), ident=ident, shown=shown[c.item_format], titles=titles,
        texts=item_texts(ds.items), index_tokens=index.tokens if index is not None and index.method != "title"
        else None, inter_item=item_positions(inter, ds.items), inter_rating=inter["rating"].to_numpy(),
        inter_user=inter["user_id"].to_numpy(zero_copy_only=False).astype(str), reviews=reviews,
    )


def family_rows(fam: Family, split: str, weight: float, ds: PreparedDataset, ctx: RenderContext,
                c: PromptBuildConfig, rng: np.random.Generator) -> pa.Table:
    """The un-rendered rows of one family and split: positions, template ids, negatives/candidates."""
    n_items = len(ctx.item_ids)
    if fam.task == "alignment":
        if ctx.index_tokens is None:
            raise LlmrecError("the alignment family needs an item index (--index) other than titles")
        if split != "train":
            return pa.table({})
        target = np.arange(n_items)
        cols = {"_target": -np.ones(n_items, np.int64), "_start": np.zeros(n_items, np.int64),
                "_end": np.zeros(n_items, np.int64), "_item": target, "user_id": [""] * n_items}
    else:
        w = _filled_targets(fam, window_rows(ds.interactions, split, c.max_history, c.min_history), ctx)
        cols = {"_target": w["target"], "_start": w["start"], "_end": w["end"],
                "_item": ctx.inter_item[w["target"]], "user_id": ctx.inter_user[w["target"]].tolist()}
    n = len(cols["_target"])
    if split == "train":
        reps = rng.permutation(n)[: int(round((weight % 1) * n))] if weight % 1 else np.array([], np.int64)
        keep = np.sort(np.concatenate([np.tile(np.arange(n), int(weight)), reps])).astype(np.int64)
        cols = {k: np.asarray(v)[keep] for k, v in cols.items()}
        choices = fam.pick(seen=True)
        template_ids = [choices[i].id for i in rng.integers(0, len(choices), len(keep))]
    else:
        template = c.eval_template or fam.pick(seen=True)[0].id
        if template not in {t.id for t in fam.templates}:
            raise LlmrecError(f"--eval_template {template!r} is not in family {fam.name}")
        template_ids = [template] * n
    n = len(template_ids)
    cols["template_id"], cols["family"], cols["split"] = template_ids, [fam.name] * n, [split] * n
    ustart = user_starts(ctx.inter_user)
    n_neg = c.n_candidates - 1 if fam.task == "candidates" else c.n_negatives if c.format == "preference" else 0
    given = bool(c.candidates_from) and fam.task in ("candidates", "rerank")
    if given:
        negatives = given_candidates(c, split, ctx, ustart, cols["_target"], cols["_item"])
    elif n_neg and fam.task != "alignment":
        negatives = sample_negatives(ctx.inter_item, ustart, cols["_target"], n_items, n_neg, rng)
    else:
        negatives = np.zeros((n, 0), np.int64)
    cols["_negatives"] = pa.array(list(negatives), pa.list_(pa.int64()))
    cols["_given"] = np.full(n, given)
    cols["_shuffle"] = rng.integers(0, 2**31, n)
    return pa.table({k: pa.array(v) if not isinstance(v, pa.Array) else v for k, v in cols.items()})


def _filled_targets(fam: Family, w: dict[str, np.ndarray], ctx: RenderContext) -> dict[str, np.ndarray]:
    """The rows whose target has what the family shows of it: review text, and a rating where the target's
    rating is shown (partly rated data has gaps; a row without one would teach the model "nan")."""
    needs = set().union(*(t.needs for t in fam.templates))
    keep = np.ones(len(w["target"]), bool)
    if "reviews" in needs:
        keep &= np.array([bool(ctx.reviews[t]) for t in w["target"]], bool)
    if "ratings" in needs and fam.task in TARGET_RATING_TASKS:
        keep &= ~np.isnan(ctx.inter_rating[w["target"]])
    return {k: v[keep] for k, v in w.items()}


def given_candidates(c: PromptBuildConfig, split: str, ctx: RenderContext, ustart: np.ndarray, target: np.ndarray,
                     item: np.ndarray) -> list[np.ndarray]:
    """Each row's first n_candidates from --candidates_from (catalog positions). Training rows are keyed by
    (user, position in the user's sequence) and get the target in place of the last candidate when it is
    missing (the order is shuffled at rendering); valid/test rows keep the list as it is, target or not."""
    from llmrec.collab.candidates import load_candidates

    lists = load_candidates(c.candidates_from, split)
    code = {i: n for n, i in enumerate(ctx.item_ids)}
    out, missing = [], []
    for t, it in zip(target.tolist(), item.tolist()):
        user = str(ctx.inter_user[t])
        record = lists.get((user, t - int(ustart[t])) if split == "train" else (user, None))
        if not record or not record["ranked_items"]:
            missing.append(user)
            continue
        ranked = record["ranked_items"]
        cands = [code[i] for i in ranked[: c.n_candidates] if i in code]
        if split == "train" and it not in cands:
            cands[-1:] = [it]
        out.append(np.array(cands, np.int64))
    if missing:
        raise LlmrecError(f"{c.candidates_from}: no {split} candidates for {len(missing)} of {len(target)} rows "
                          f"(first user: {missing[0]}); export them from a model trained on this dataset")
    return out


def main(argv: list[str] | None = None) -> None:
    from llmrec.artifacts import atomic_dir, provenance, write_json
    from llmrec.cli import parse_args

    (config,) = parse_args(PromptBuildConfig, argv, prog="llmrec prompts build")
    if not config.output:
        raise LlmrecError("--output is required")
    ds = PreparedDataset.load(config.data)
    dd = build_prompt_datasets(config, ds)
    left_out = fit_families([load_family(f) for f in config.families], ds, config.eval_template)[1]
    with atomic_dir(config.output, overwrite=config.overwrite) as out:
        dd.save_to_disk(str(out / "arrow"))
        for split, d in dd.items():
            d.to_json(str(out / f"{split}.jsonl"), force_ascii=False)
        write_json(out / "stats.json", {**prompt_stats(dd), **({"left_out": left_out} if left_out else {})})
        write_json(out / "meta.json", provenance(dataclasses.asdict(config)))
    print(f"wrote {config.output}: " + ", ".join(f"{s} {len(d)} rows" for s, d in dd.items()))
    families = dd["train"]["family"]
    for fam in dict.fromkeys(families):
        row = dd["train"][families.index(fam)]
        print(f"\n--- {fam} ({row['template_id']}, user {row['user_id'] or '-'}) ---")
        print(format_row(row))


def format_row(row: dict) -> str:
    messages = row.get("messages") or row["prompt"] + row["completion"]
    return "\n".join(f"[{m['role']}] {m['content']}" for m in messages)


def prompt_stats(dd) -> dict[str, Any]:
    stats = {}
    for split, d in dd.items():
        fams = d["family"]
        stats[split] = {"rows": len(d), "by_family": {f: fams.count(f) for f in dict.fromkeys(fams)},
                        "rows_with_history_dropped_to_fit": sum(1 for x in d["n_dropped_history"] if x > 0)}
    return stats


if __name__ == "__main__":
    main(sys.argv[1:])
