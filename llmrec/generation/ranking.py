"""Rank catalog items with a causal LM (trie-constrained beam search) into rankings records, which
`llmrec.evaluation.rank.evaluate` scores like any others. Generation builds on evaluation, never the
reverse: `llmrec eval rank --checkpoint` imports this module inside the one function that needs it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmrec.data.dataset import PreparedDataset
from llmrec.evaluation.rank import RankEvalConfig
from llmrec.evaluation.sampling import sample_rows
from llmrec.generation.recommend import recommend
from llmrec.indexing.item_index import ItemIndex
from llmrec.indexing.trie import ItemTrie


def model_rankings(
    model: Any, tokenizer: Any, trie: ItemTrie, rows: Any, k: int, batch_size: int = 16, progress: bool = True,
    row_inputs: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Evaluation rows (prompt, user_id, target_item_id) -> rankings records, as rankings.jsonl holds them.
    `trie` is `ItemIndex.trie(tokenizer)`: built once by the caller, reused across evaluations. `row_inputs`:
    more model inputs, one row per evaluation row (a personalized LoRA's user_input)."""
    ranked, scores = recommend(model, tokenizer, rows["prompt"], trie, k, batch_size, progress, row_inputs)
    return [
        {"user_id": u, "ranked_items": r, "scores": s, "target_item_id": t}
        for u, r, s, t in zip(rows["user_id"], ranked, scores, rows["target_item_id"])
    ]


def checkpoint_rows(
    settings: dict[str, Any],
    config: RankEvalConfig,
    dataset: PreparedDataset,
    index: ItemIndex | None = None,
    tokenizer: Any = None,
) -> Any:
    """The `config.split` prompt rows to rank, rendered as in training (`settings` is the checkpoint's
    llmrec.json): one per user of the split, or per user of the seeded `--max_users` sample. The training
    run's own `max_eval_users` is dropped: it would leave users unranked that the report then scores."""
    from llmrec.prompts.build import PromptBuildConfig, build_prompt_datasets

    prompts = PromptBuildConfig(
        **{**settings["prompts"], "data": config.data, "max_train_rows": 1, "max_eval_users": None}
    )
    rows = build_prompt_datasets(prompts, dataset, index, tokenizer if prompts.max_prompt_tokens else None)
    return sample_rows(rows[config.split], config.max_users, config.seed)


def checkpoint_rankings(config: RankEvalConfig, dataset: PreparedDataset) -> list[dict[str, Any]]:
    """Load a recipes/sft.py (or recipes/plora.py) output folder and rank items for the users of `config.split`
    (`checkpoint_rows`)."""
    from transformers import AutoTokenizer

    from llmrec.artifacts import read_json
    from llmrec.hub.load import load_for_inference
    from llmrec.hub.resolve import is_personalized

    folder = Path(config.checkpoint)
    settings = read_json(folder / "llmrec.json")
    index = ItemIndex.load(folder / "item_index")
    index.check_dataset(dataset.items, config.data)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    rows = checkpoint_rows(settings, config, dataset, index, tokenizer)  # before the model: fail fast
    row_inputs = None
    if is_personalized(folder):  # each user's gate rides along with the prompts
        from llmrec.plora.inference import load_for_ranking

        model, row_inputs = load_for_ranking(folder, dataset, rows)
    else:
        model = load_for_inference(folder)
    return model_rankings(model, tokenizer, index.trie(tokenizer), rows, max(config.ks), config.batch_size,
                          row_inputs=row_inputs)
