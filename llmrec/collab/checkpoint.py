"""Reading a classic model's folder back: the model itself, and its rankings for `llmrec eval rank`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from llmrec.artifacts import read_json
from llmrec.collab.base import CollabModel
from llmrec.collab.bpr import BPR
from llmrec.collab.ease import EASE
from llmrec.collab.rank import split_records
from llmrec.collab.fused import FusedModel
from llmrec.collab.itemhead import ItemHeadLLM
from llmrec.collab.sasrec import SASRec
from llmrec.collab.sequences import CollabData, SplitHistories
from llmrec.data.dataset import PreparedDataset
from llmrec.errors import LlmrecError
from llmrec.hardware import pick_device

KINDS: dict[str, type[CollabModel]] = {cls.kind: cls for cls in (SASRec, BPR, EASE, ItemHeadLLM, FusedModel)}


def is_collab_folder(folder: str | Path) -> bool:
    path = Path(folder) / "llmrec.json"
    return path.exists() and "collab" in read_json(path)


def check_catalog(folder: str | Path, dataset: PreparedDataset) -> None:
    """Refuse a model folder made for another catalog than `dataset`'s (reads llmrec.json only)."""
    from llmrec.indexing.item_index import catalog_fingerprint

    if read_json(Path(folder) / "llmrec.json").get("catalog_fingerprint") != catalog_fingerprint(dataset.items):
        raise LlmrecError(f"{folder}: this model was trained on another catalog than {dataset.path} "
                          "(fingerprint mismatch); train it on this dataset")


def load_collab(folder: str | Path, dataset: PreparedDataset | None = None) -> CollabModel:
    """A model folder written by `train_collab`; refuses one made for another catalog than `dataset`'s."""
    folder = Path(folder)
    if dataset is not None:
        check_catalog(folder, dataset)
    config = dict(read_json(folder / "config.json"))
    kind = config.pop("kind", None)
    if kind not in KINDS:
        raise LlmrecError(f"{folder}/config.json: unknown model kind {kind!r}; valid: {', '.join(KINDS)}")
    model = KINDS[kind](**config)
    model.load_state_dict(load_file(folder / "model.safetensors"))
    return (model.to(pick_device()) if model.prefers_accelerator else model).eval()


def checkpoint_records(folder: str | Path, dataset: PreparedDataset, split: str, k: int,
                       users: list[str] | None = None) -> list[dict[str, Any]]:
    """Full-catalog top-k for the users of `split` (or only `users`), history masked."""
    model = load_collab(folder, dataset)
    data = CollabData.from_dataset(dataset)
    held_out = data.split(dataset, split)
    if users is not None:
        wanted = set(users)
        keep = [i for i, u in enumerate(held_out.users) if u in wanted]
        held_out = SplitHistories([held_out.users[i] for i in keep], [held_out.histories[i] for i in keep],
                                  held_out.targets[keep])
    return split_records(model, data, held_out, k)
