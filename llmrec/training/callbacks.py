"""Ranking evaluation during training: every N steps, NDCG/Recall@K on a sample of validation users.

Every rank takes part. Under FSDP or ZeRO-3 each forward pass gathers the parameters from all ranks, so a
forward pass on one rank alone would wait forever for the others. Each rank ranks a contiguous shard of
the users, all ranks call the model in lockstep (`Lockstep`), the records are gathered, and every rank
scores the same full list: the metrics are computed identically everywhere and every rank logs them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from transformers import TrainerCallback

from llmrec.data.dataset import PreparedDataset
from llmrec.evaluation.rank import RankEvalConfig, evaluate
from llmrec.evaluation.result import Evaluation
from llmrec.generation.ranking import model_rankings
from llmrec.indexing.item_index import ItemIndex
from llmrec.indexing.trie import ItemTrie

RowInputs = Callable[[Any], dict[str, torch.Tensor]]  # evaluation rows -> more model inputs, one row each


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class Lockstep:
    """The model, called in step with the other ranks. Ranks run out of forward passes at different times
    (fewer users, shorter beam searches), so before each call every rank says whether it has a real one;
    a rank with none left joins the others' with a one-token dummy pass (`finish`), as transformers'
    `generate(synced_gpus=True)` does for ZeRO-3. Attributes other than the call are the model's own."""

    def __init__(self, model: Any, device: torch.device):
        self.model, self.device = model, device

    def __getattr__(self, name: str) -> Any:  # training, eval, train, parameters: what the ranking code reads
        return getattr(self.model, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._busy_ranks(1)
        return self.model(*args, **kwargs)

    def finish(self) -> None:
        """This rank has no forward pass left: join the others' until no rank has one."""
        was_training = self.model.training
        self.model.eval()
        dummy = torch.zeros(1, 1, dtype=torch.long, device=next(self.model.parameters()).device)
        with torch.no_grad():
            while self._busy_ranks(0):
                self.model(input_ids=dummy, use_cache=False)
        self.model.train(was_training)

    def _busy_ranks(self, busy: int) -> int:
        flag = torch.tensor([busy], device=self.device)
        dist.all_reduce(flag)
        return int(flag.item())


def rank_on_every_process(
    model: Any,
    tokenizer: Any,
    trie: ItemTrie,
    rows: Any,
    k: int,
    batch_size: int,
    device: torch.device,
    progress: bool = False,
    inputs_for: RowInputs | None = None,
) -> list[dict[str, Any]]:
    """Rankings records for every row, on every rank: each rank ranks its contiguous shard of `rows`, then
    all ranks gather all records, in row order. `device` is where the process group's collectives run (the
    rank's GPU under NCCL, the CPU under gloo). With one process this is `model_rankings`. `inputs_for(rows)`:
    more model inputs for those rows (a personalized LoRA's user_input), built per shard."""
    n = world_size()
    if n == 1:
        return model_rankings(model, tokenizer, trie, rows, k, batch_size, progress,
                              inputs_for(rows) if inputs_for else None)
    synced = Lockstep(model, device)
    shard = rows.shard(num_shards=n, index=dist.get_rank(), contiguous=True)
    records = model_rankings(synced, tokenizer, trie, shard, k, batch_size, progress and dist.get_rank() == 0,
                             inputs_for(shard) if inputs_for else None)
    synced.finish()
    gathered: list[list[dict[str, Any]]] = [[] for _ in range(n)]
    dist.all_gather_object(gathered, records)
    return [r for part in gathered for r in part]  # contiguous shards in rank order: the rows' order


class RankingEvalCallback(TrainerCallback):
    """Logs `ranking/ndcg@K` and `ranking/recall@K` (through the trainer, so every `report_to` sees them)."""

    def __init__(
        self,
        trainer: Any,
        index: ItemIndex,
        dataset: PreparedDataset,
        rows: Any,
        every: int,
        k: int,
        batch_size: int,
        at_start: bool,
        trie: ItemTrie | None = None,
        inputs_for: RowInputs | None = None,
    ):
        self.trainer, self.dataset, self.rows, self.inputs_for = trainer, dataset, rows, inputs_for
        # once: every evaluation decodes over the same catalog (a caller that has the trie passes it)
        self.trie = trie or index.trie(trainer.processing_class)
        self.every, self.k, self.batch_size, self.at_start = every, k, batch_size, at_start
        self.history: list[dict[str, float]] = []

    def evaluate(self, progress: bool = False) -> Evaluation:
        """Rank the sampled users with the model as it is now and score them; call it on every rank."""
        accelerator, tokenizer = self.trainer.accelerator, self.trainer.processing_class
        model, device = accelerator.unwrap_model(self.trainer.model), accelerator.device
        records = rank_on_every_process(
            model, tokenizer, self.trie, self.rows, self.k, self.batch_size, device, progress, self.inputs_for
        )
        config = RankEvalConfig(data="", output="", split="valid", ks=[self.k], n_bootstrap=200)
        return evaluate(self.dataset, records, config, users=set(self.rows["user_id"]))

    def summary(self, final: bool) -> dict[str, Any]:
        """The run's ranking results for llmrec.json: the evaluations during training and, when `final`, a
        last one now (with progress), on every rank."""
        out: dict[str, Any] = {}
        if final:
            metrics = self.evaluate(progress=True).metrics
            out = {"valid_metrics": {k: v for k, v in metrics.items() if "@" in k}, "valid_users": len(self.rows)}
        return {**out, "ranking_evals": self.history}

    def run(self, step: int) -> dict[str, float]:
        metrics = self.evaluate().metrics
        logs = {f"ranking/{m}@{self.k}": metrics[f"{m}@{self.k}"]["value"] for m in ("ndcg", "recall")}
        self.history.append({"step": step, **logs})
        return logs

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.at_start and state.global_step == 0:  # the untrained reference
            self.trainer.log(self.run(0))

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        last = state.global_step == state.max_steps  # the final evaluation (with CIs) follows training
        if self.every and state.global_step % self.every == 0 and not last:
            should_log = control.should_log  # Trainer.log clears it, which would skip this step's loss log
            self.trainer.log(self.run(state.global_step))
            control.should_log = self.trainer.control.should_log = should_log
