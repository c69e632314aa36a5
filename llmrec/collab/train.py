"""`llmrec train collab` / `recipes/collab.py`: fit SASRec, BPR, EASE or an LLM with an item head (E4SRec) on a
prepared dataset's training split.

Gradient models train epoch by epoch with early stopping on validation NDCG@k (best weights kept); EASE
picks its regularisation weight on validation. Every epoch leaves a resumable checkpoint in
`output/checkpoint/`; the finished folder replaces it atomically: model.safetensors, config.json,
llmrec.json (settings, validation metrics with CIs, training history) and a model card README.md.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from llmrec.artifacts import atomic_dir, provenance, read_json, write_json
from llmrec.collab.base import CollabModel
from llmrec.collab.bpr import BPR
from llmrec.collab.candidates import write_candidates
from llmrec.collab.checkpoint import check_catalog, load_collab
from llmrec.collab.ease import EASE, grams
from llmrec.collab.fused import FusedModel
from llmrec.collab.itemhead import ItemHeadLLM
from llmrec.collab.next_item import NextItemModel
from llmrec.collab.rank import ndcg_at_k, split_records
from llmrec.collab.sasrec import SASRec
from llmrec.collab.sequences import CollabData
from llmrec.collab.text_init import catalog_text_vectors, centred_unit_rows, pca_init
from llmrec.data.dataset import PreparedDataset
from llmrec.errors import LlmrecError, check_at_least
from llmrec.evaluation.rank import RankEvalConfig, evaluate, protocol_line
from llmrec.hardware import pick_device, use_every_core

# Per-model defaults for the options left unset (None): what converged best on ml-100k's validation split.
DEFAULTS = {"sasrec": {"batch_size": 64, "lr": 1e-3, "weight_decay": 0.0},
            "bpr": {"batch_size": 2048, "lr": 3e-3, "weight_decay": 1e-5},
            "itemhead": {"batch_size": 16, "lr": 1e-3, "weight_decay": 0.0},
            "ease": {}, "fused": {}}


@dataclass
class CollabConfig:
    data: str = field(metadata={"help": "Prepared dataset folder (llmrec data prepare)."})
    output: str = field(metadata={"help": "Model folder to write (model.safetensors, config.json, llmrec.json, "
                                  "README.md)."})
    model: Literal["sasrec", "bpr", "ease", "itemhead", "fused"] = field(default="sasrec", metadata={
        "help": "Which model: a classic one; itemhead (an LLM reading SASRec's item embeddings as tokens, with a "
                "linear head over the catalog: E4SRec); or fused (two trained --members' scores combined)."})
    dim: int = field(default=64, metadata={"help": "sasrec/bpr: embedding (hidden) size; "
                                              "itemhead: the item tokens' ID-embedding size (= the SASRec's)."})
    max_len: int = field(default=200, metadata={"help": "sasrec/itemhead: most recent items a user is "
                                                   "represented by."})
    n_layers: int = field(default=2, metadata={"help": "sasrec: Transformer blocks."})
    n_heads: int = field(default=2, metadata={"help": "sasrec: attention heads."})
    dropout: float = field(default=0.2, metadata={"help": "sasrec: dropout on embeddings, attention and FFN; "
                                                "itemhead: on the item tokens and the LoRA."})
    epochs: int = field(default=200, metadata={"help": "sasrec/bpr/itemhead: most epochs; early stopping usually "
                                                "ends sooner."})
    patience: int = field(default=20, metadata={"help": "sasrec/bpr/itemhead: stop after this many epochs without a "
                                                "better validation NDCG@k."})
    batch_size: int | None = field(default=None, metadata={"help": "sasrec: sequences per step (default 64; "
                                                           "itemhead 16); bpr: pairs per step (default 2048)."})
    lr: float | None = field(default=None, metadata={"help": "sasrec/bpr/itemhead: Adam learning rate (default 1e-3 / "
                                                       "3e-3 / 1e-3)."})
    weight_decay: float | None = field(default=None,
                                       metadata={"help": "sasrec/bpr: L2 weight decay (default 0 / 1e-5)."})
    lambdas: list[float] = field(default_factory=lambda: [10.0, 30.0, 100.0, 300.0, 1000.0],
                                 metadata={"help": "ease: regularisation weights tried; the best on validation wins."})
    text_encoder: str | None = field(default=None, metadata={
        "help": "Give the model an LLM's view of the items: this encoder (e.g. all-minilm-l6-v2, smollm2-135m) "
                "embeds each item's text once; sasrec/bpr start their item embeddings from its PCA (LLMInit), "
                "ease adds alpha * E E^T to its Gram matrix (collective EASE). Default: none."})
    text_weights: list[float] = field(default_factory=lambda: [0.0, 10.0, 30.0, 100.0, 300.0],
                                      metadata={"help": "ease with --text_encoder: side-information weights alpha "
                                                "tried with each lambda; the best pair on validation wins."})
    llm: str = field(default="smollm2-135m", metadata={"help": "itemhead: the language model adapted with LoRA (an "
                                                       "embedded name, folder or hub id)."})
    item_embeddings: str | None = field(default=None, metadata={
        "help": "itemhead: a SASRec folder (same dataset, --dim) whose item embeddings become the LLM's item "
                "tokens, frozen (E4SRec). Default: an item table learned from scratch."})
    lora_r: int = field(default=8, metadata={"help": "itemhead: LoRA rank on the attention projections (alpha 2r)."})
    members: list[str] = field(default_factory=list, metadata={
        "help": "fused: two model folders trained on this dataset; score = z(first) + w * z(second), z per user."})
    fusion_weights: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 1.0, 2.0, 4.0], metadata={
        "help": "fused: weights w tried; the best on validation wins (0: the first member's ranking)."})
    eval_k: int = field(default=10, metadata={"help": "K of the validation NDCG@K that early stopping watches."})
    candidates: int = field(default=0, metadata={"help": "Also export each user's top-N candidates for the train "
                                                 "(per prefix), valid and test splits (0: none)."})
    threads: int | None = field(default=None, metadata={"help": "CPU threads (default: every core)."})
    seed: int = field(default=0, metadata={"help": "Seed of initialisation, batch order, negatives and dropout."})
    overwrite: bool = field(default=False, metadata={"help": "Replace --output if it holds a finished model."})

    def resolved(self, name: str) -> Any:
        value = getattr(self, name)
        return DEFAULTS[self.model].get(name) if value is None else value


def build_model(config: CollabConfig, data: CollabData) -> CollabModel:
    if config.model == "sasrec":
        return SASRec(data.n_items, config.max_len, config.dim, config.n_layers, config.n_heads, config.dropout)
    if config.model == "bpr":
        return BPR(data.n_items, data.users, config.dim)
    if config.model == "fused":
        return FusedModel(data.n_items, config.members)
    if config.model == "itemhead":
        return ItemHeadLLM(data.n_items, config.llm, config.dim, config.max_len, config.lora_r, config.dropout,
                           frozen_items=config.item_embeddings is not None)
    return EASE(data.n_items)


def check_config(config: CollabConfig) -> None:
    check_at_least(config, {}, positive=("dim", "max_len", "n_layers", "epochs", "patience", "eval_k", "n_heads",
                                         "batch_size", "lr", "lora_r"))
    if config.model == "sasrec" and config.dim % config.n_heads:
        raise LlmrecError(f"--dim {config.dim} must be divisible by --n_heads {config.n_heads}")
    if not 0 <= config.dropout < 1:
        raise LlmrecError(f"--dropout must be in [0, 1), got {config.dropout}")
    if config.model == "ease" and (not config.lambdas or min(config.lambdas) <= 0):
        raise LlmrecError("--lambdas must be one or more positive numbers")
    if config.candidates < 0:
        raise LlmrecError("--candidates must be >= 0")
    if config.model == "fused" and (len(config.members) != 2 or not config.fusion_weights):
        raise LlmrecError("--model fused needs two --members folders and one or more --fusion_weights")
    if config.item_embeddings and config.model != "itemhead":
        raise LlmrecError("--item_embeddings is an itemhead option (the LLM's item tokens)")
    if config.text_encoder and (not config.text_weights or min(config.text_weights) < 0):
        raise LlmrecError("--text_weights must be one or more numbers >= 0")


# -- resumable state -----------------------------------------------------------------------------------------
def save_state(folder: Path, model: CollabModel, best: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
               state: dict[str, Any]) -> None:
    """Weights, best weights and Adam's moments as safetensors, counters as JSON (no pickle), then renamed."""
    opt = optimizer.state_dict()
    with atomic_dir(folder, overwrite=True) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
        save_file(best, tmp / "best.safetensors")
        save_file({f"{p}.{k}": v for p, s in opt["state"].items() for k, v in s.items()},
                  tmp / "optimizer.safetensors")
        write_json(tmp / "state.json", {**state, "param_groups": opt["param_groups"]})


def load_state(folder: Path, model: CollabModel, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    state = read_json(folder / "state.json")
    model.load_state_dict(load_file(folder / "model.safetensors"))
    moments: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in load_file(folder / "optimizer.safetensors").items():
        p, name = key.split(".", 1)
        moments.setdefault(int(p), {})[name] = value
    optimizer.load_state_dict({"state": moments, "param_groups": state.pop("param_groups")})
    return state, load_file(folder / "best.safetensors")


def settings_key(config: CollabConfig) -> dict[str, Any]:
    """What must match for a checkpoint to be resumed: everything but where it is written, the stopping
    rules (a resumed run may be given more epochs) and what is exported at the end."""
    skip = ("output", "overwrite", "threads", "epochs", "patience", "candidates")
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in skip}


# -- fitting -------------------------------------------------------------------------------------------------
def fit_gradient(model: CollabModel, data: CollabData, valid, config: CollabConfig, out: Path) -> dict[str, Any]:
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.resolved("lr"),
                                 weight_decay=config.resolved("weight_decay"))
    checkpoint = out / "checkpoint"
    # seconds: training time of the epochs done so far, so a resumed run reports the whole run's time
    state = {"epoch": 0, "best": -1.0, "best_epoch": 0, "history": [], "settings": settings_key(config), "seconds": 0.0}
    best = {k: v.clone() for k, v in model.state_dict().items()}
    if (checkpoint / "state.json").exists():
        saved = read_json(checkpoint / "state.json")
        if saved.get("settings") != state["settings"]:
            raise LlmrecError(f"{checkpoint}: made with other settings; pass --overwrite to start over")
        state, best = load_state(checkpoint, model, optimizer)
        print(f"resuming {out} after epoch {state['epoch']}")
    earlier = state.get("seconds", 0.0)
    batch_size = config.resolved("batch_size")
    bar = tqdm(range(state["epoch"], config.epochs), initial=state["epoch"], total=config.epochs,
               desc=f"{config.model} epochs")
    for epoch in bar:
        if epoch - state["best_epoch"] >= config.patience and state["history"]:
            break
        epoch_start = time.perf_counter()
        # Randomness is a function of (seed, epoch), so a resumed run continues exactly as an unbroken one.
        torch.manual_seed(config.seed * 100_003 + epoch)
        rng = np.random.default_rng([config.seed, epoch])
        model.train()
        total, steps = 0.0, 0
        for step, batch in enumerate(model.batches(data.train, rng, batch_size)):
            loss = model.loss(*(t.to(model.device) for t in batch))
            if not torch.isfinite(loss):
                raise LlmrecError(f"{config.model}: loss is {loss.item()} at epoch {epoch + 1}, step {step + 1}; "
                                  "lower --lr (nothing was saved for this epoch)")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
        ndcg = ndcg_at_k(model, valid, config.eval_k)
        state["history"].append({"epoch": epoch + 1, "loss": round(total / max(steps, 1), 5),
                                 f"valid_ndcg@{config.eval_k}": round(ndcg, 5)})
        if ndcg > state["best"]:
            state.update(best=ndcg, best_epoch=epoch + 1)
            best = {k: v.detach().clone() for k, v in model.state_dict().items()}
        state["epoch"] = epoch + 1
        state["seconds"] = round(state.get("seconds", 0.0) + time.perf_counter() - epoch_start, 3)
        bar.set_postfix(loss=f"{total / max(steps, 1):.4f}", ndcg=f"{ndcg:.4f}", best=f"{state['best']:.4f}")
        save_state(checkpoint, model, best, optimizer, state)
    model.load_state_dict(best)
    return {"epochs_run": state["epoch"], "best_epoch": state["best_epoch"], "history": state["history"],
            "resumed_seconds": earlier}


def fit_ease(model: EASE, data: CollabData, valid, config: CollabConfig, side: np.ndarray | None) -> dict[str, Any]:
    history, metric = [], f"valid_ndcg@{config.eval_k}"
    xtx, sst = grams(data.train, data.n_items, side)
    for lam in config.lambdas:
        for alpha in config.text_weights if side is not None else [0.0]:
            model.lam, model.side_weight = lam, alpha
            model.fit_grams(xtx, sst)
            ndcg = round(ndcg_at_k(model, valid, config.eval_k), 5)
            history.append({"lambda": lam, "text_weight": alpha, metric: ndcg})
            print(f"ease lambda {lam:g} text weight {alpha:g}: {metric} {history[-1][metric]:.4f}")
    best = max(history, key=lambda h: h[metric])
    model.lam, model.side_weight = best["lambda"], best["text_weight"]
    model.fit_grams(xtx, sst)
    return {"lambda": best["lambda"], "text_weight": best["text_weight"], "history": history}


def fit_fused(model: FusedModel, valid, config: CollabConfig) -> dict[str, Any]:
    history, metric = [], f"valid_ndcg@{config.eval_k}"
    for weight in config.fusion_weights:
        model.weight = weight
        history.append({"weight": weight, metric: round(ndcg_at_k(model, valid, config.eval_k), 5)})
        print(f"fused weight {weight:g}: {metric} {history[-1][metric]:.4f}")
    best = max(h[metric] for h in history)
    model.weight = min(h["weight"] for h in history if h[metric] == best)
    return {"weight": model.weight, "history": history}


def init_item_embeddings(model: CollabModel, vectors: np.ndarray, seed: int) -> None:
    """Overwrite the item embedding rows with the PCA of the items' text vectors, at the rows' own scale."""
    rows = model.item_emb.weight[1:] if isinstance(model, NextItemModel) else model.item_emb.weight  # row 0 pads
    with torch.no_grad():
        rows.copy_(torch.from_numpy(pca_init(vectors, rows.shape[1], rows.std().item(), seed)))


def train_collab(config: CollabConfig) -> dict[str, Any]:
    """Fit, evaluate on validation, export candidates if asked, and write the model folder."""
    check_config(config)
    out = Path(config.output)
    if (out / "llmrec.json").exists() and not config.overwrite:
        raise LlmrecError(f"{out}: already holds a trained model; pass --overwrite to replace it")
    if config.overwrite and out.exists():
        shutil.rmtree(out / "checkpoint", ignore_errors=True)
    dataset = PreparedDataset.load(config.data)
    data = CollabData.from_dataset(dataset)
    valid = data.split(dataset, "valid")
    if not valid.users:
        raise LlmrecError(f"{dataset.path}: the valid split is empty; early stopping and model choice need it")
    sequential = config.model in ("sasrec", "itemhead")
    if sequential and not any(len(s) > 1 for s in data.train):
        raise LlmrecError(f"{dataset.path}: no user has two training items, so {config.model} has no next-item "
                          "target")
    if config.threads:
        torch.set_num_threads(config.threads)
    else:
        use_every_core()
    torch.manual_seed(config.seed)
    for member in config.members:  # before FusedModel loads them (once): each must be a model of this catalog
        check_catalog(member, dataset)
    model = build_model(config, data)
    if config.item_embeddings:
        model.take_item_embeddings(load_collab(config.item_embeddings, dataset))
    if model.prefers_accelerator:
        model.to(pick_device())
    start = time.perf_counter()
    vectors = catalog_text_vectors(dataset, config.text_encoder) if config.text_encoder else None
    if isinstance(model, EASE):
        result = fit_ease(model, data, valid, config, None if vectors is None else centred_unit_rows(vectors))
    elif isinstance(model, FusedModel):
        result = fit_fused(model, valid, config)
    else:
        if vectors is not None:  # a resumed run then loads its checkpoint over it
            init_item_embeddings(model, vectors, config.seed)
        result = fit_gradient(model, data, valid, config, out)
    # A resumed run adds the epochs that earlier processes trained (their set-up is not counted).
    result["train_seconds"] = round(time.perf_counter() - start + result.pop("resumed_seconds", 0.0), 1)
    result["threads"] = torch.get_num_threads()
    result["skipped_users"] = sum(len(s) < 2 for s in data.train) if sequential else 0

    rank_config = RankEvalConfig(data=config.data, output="", split="valid", ks=[1, 5, 10, 20], n_bootstrap=1000)
    evaluation = evaluate(dataset, split_records(model, data, valid, max(rank_config.ks)), rank_config)
    result["valid_metrics"] = {k: v for k, v in evaluation.metrics.items() if "@" in k}
    result["protocol"] = protocol_line(dataset, rank_config)
    with atomic_dir(out, overwrite=True) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
        write_json(tmp / "config.json", {"kind": model.kind, **model.hyperparameters()})
        if config.candidates:
            result["candidates"] = write_candidates(tmp, model, data, dataset, config.candidates)
        write_json(tmp / "llmrec.json", {"collab": model.kind, "data": config.data, "catalog_fingerprint":
                                         data.fingerprint, "settings": dataclasses.asdict(config), "result": result,
                                         "provenance": provenance()})
        write_model_card(tmp, config, dataset, result)
    return result


def write_model_card(out: Path, config: CollabConfig, dataset: PreparedDataset, result: dict[str, Any]) -> None:
    s, m = dataset.stats, result["valid_metrics"]
    if config.model == "ease":
        trained = f"lambda {result['lambda']:g}, text weight {result['text_weight']:g} chosen on validation"
    elif config.model == "fused":
        trained = (f"z({config.members[0]}) + {result['weight']:g} x z({config.members[1]}), the weight chosen "
                   "on validation")
    else:
        trained = (f"{result['epochs_run']} epochs, best at epoch {result['best_epoch']} (early stopping on "
                   f"validation NDCG@{config.eval_k}, patience {config.patience})")
    lines = ["---", "library_name: llmrec", f"tags: [llmrec, recommendation, {config.model}]", "---",
             f"# {config.model.upper()} trained with llmrec", "",
             f"- **Data:** `{config.data}`: {s['n_users']} users, {s['n_items']} items, "
             f"{s['n_interactions']} interactions; fit on the training split only",
             f"- **Training:** {trained}; {result['train_seconds']} s on {result['threads']} CPU threads",
             f"- **Item text encoder:** {config.text_encoder or 'none'}",
             f"- **Settings:** `{json.dumps(settings_key(config))}`", "",
             f"## Validation ({result['protocol']})", "", "| metric | value | 95% CI |", "|---|---|---|"]
    lines += [f"| {n} | {m[n]['value']:.4f} | [{m[n]['ci95'][0]:.4f}, {m[n]['ci95'][1]:.4f}] |"
              for n in ("ndcg@10", "recall@10", "mrr@10", "ndcg@20", "recall@20") if n in m]
    for split, c in result.get("candidates", {}).items():
        lines.append(f"\nCandidates `{c['file']}`: top {config.candidates}; target among them for "
                     f"{c['target_in_candidates']:.2%} of {c['rows']} {split} rows.")
    lines += ["", "Test: `llmrec eval rank --checkpoint THIS_FOLDER --data DATASET --output REPORT`."]
    (out / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    from llmrec.cli import parse_args

    (config,) = parse_args(CollabConfig, argv, prog="llmrec train collab")
    result = train_collab(config)
    m = result["valid_metrics"]
    print(f"wrote {config.output} in {result['train_seconds']} s\n{result['protocol']}")
    print("  ".join(f"{n} {m[n]['value']:.4f} [{m[n]['ci95'][0]:.4f}, {m[n]['ci95'][1]:.4f}]"
                    for n in ("ndcg@10", "recall@10")))
    if result["skipped_users"]:
        print(f"users with fewer than 2 training items (no next-item target): {result['skipped_users']}")
    for split, c in result.get("candidates", {}).items():
        print(f"candidates {split}: {c['rows']} rows, target among top {config.candidates}: "
              f"{c['target_in_candidates']:.2%}")
