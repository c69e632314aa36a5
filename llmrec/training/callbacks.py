"""Ranking evaluation during training: every N steps, NDCG/Recall@K on a sample of validation users."""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from llmrec.data.dataset import PreparedDataset
from llmrec.evaluation.generative import evaluate_model
from llmrec.evaluation.rank import RankEvalConfig
from llmrec.indexing.item_index import ItemIndex


class RankingEvalCallback(TrainerCallback):
    """Logs `ranking/ndcg@K` and `ranking/recall@K` (through the trainer, so every `report_to` sees them)."""

    def __init__(self, trainer: Any, index: ItemIndex, dataset: PreparedDataset, rows: Any, every: int, k: int,
                 batch_size: int, at_start: bool):
        self.trainer, self.dataset, self.rows = trainer, dataset, rows
        self.trie = index.trie(trainer.processing_class)  # once: every evaluation decodes over the same catalog
        self.every, self.k, self.batch_size, self.at_start = every, k, batch_size, at_start
        self.history: list[dict[str, float]] = []

    def run(self, step: int) -> dict[str, float]:
        config = RankEvalConfig(data="", output="", split="valid", ks=[self.k], n_bootstrap=200)
        model = self.trainer.accelerator.unwrap_model(self.trainer.model)
        result = evaluate_model(model, self.trainer.processing_class, self.trie, self.dataset, self.rows, config,
                                self.batch_size, progress=False)
        logs = {f"ranking/{m}@{self.k}": result.metrics[f"{m}@{self.k}"]["value"] for m in ("ndcg", "recall")}
        self.history.append({"step": step, **logs})
        return logs

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.at_start and state.global_step == 0 and state.is_world_process_zero:  # the untrained reference
            self.trainer.log(self.run(0))

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        last = state.global_step == state.max_steps  # the final evaluation (with CIs) follows training
        if self.every and state.global_step % self.every == 0 and not last and state.is_world_process_zero:
            should_log = control.should_log  # Trainer.log clears it, which would skip this step's loss log
            self.trainer.log(self.run(state.global_step))
            control.should_log = self.trainer.control.should_log = should_log
