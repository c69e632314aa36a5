"""An SFT checkpoint as the policy to align: its LoRA adapter made trainable, its tokenizer, item index and
prompt settings, and the dataset it was trained on (or another with the same catalog)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState

from llmrec.artifacts import read_json, write_json
from llmrec.data.dataset import PreparedDataset
from llmrec.errors import LlmrecError
from llmrec.evaluation.rank import RankEvalConfig
from llmrec.generation.ranking import checkpoint_rows
from llmrec.indexing.item_index import ItemIndex
from llmrec.indexing.trie import ItemTrie
from llmrec.prompts.build import PromptBuildConfig, build_prompt_datasets


@dataclass
class Policy:
    model: Any  # peft.PeftModel, adapter "default" trainable
    tokenizer: Any
    index: ItemIndex
    settings: dict[str, Any]  # the SFT checkpoint's llmrec.json
    dataset: PreparedDataset
    trie: ItemTrie = field(init=False)

    def __post_init__(self) -> None:
        self.trie = self.index.trie(self.tokenizer)

    def train_rows(self, n: int, seed: int) -> Any:
        """A seeded sample of `n` training prompts rendered as in SFT, as prompt + completion rows. Valid and
        test are capped at one row: `build_prompt_datasets` renders every split, and only train is used."""
        prompts = PromptBuildConfig(**{**self.settings["prompts"], "max_train_rows": n, "prompt_seed": seed,
                                       "format": "sft", "sft_style": "prompt_completion", "max_eval_users": 1})
        return build_prompt_datasets(prompts, self.dataset, self.index,
                                     self.tokenizer if prompts.max_prompt_tokens else None)["train"]

    def eval_rows(self, n: int, seed: int) -> Any:
        """A seeded sample of validation prompts, the rows `llmrec eval rank --checkpoint` would rank."""
        config = RankEvalConfig(data=str(self.dataset.path), output="", split="valid", max_users=n, seed=seed)
        return checkpoint_rows(self.settings, config, self.dataset, self.index, self.tokenizer)

    def save(self, out: Path, **settings: Any) -> None:
        """Write an SFT-shaped checkpoint (adapter, tokenizer, item_index/, llmrec.json with the SFT settings
        plus `settings`) that `llmrec eval rank --checkpoint` scores like any other. Main process only."""
        self.model.save_pretrained(out)
        self.tokenizer.save_pretrained(out)
        self.index.save(out / "item_index", overwrite=True)
        write_json(out / "llmrec.json", {**self.settings, **settings})

    def drop_reference(self) -> None:
        """Delete TRL's frozen "ref" copy of the adapter (made by DPOTrainer / GRPOTrainer when they train an
        existing adapter): it is not part of the trained checkpoint, and the next round makes a new one."""
        if "ref" in self.model.peft_config:
            self.model.delete_adapter("ref")

    def load_adapter_weights(self, folder: Path) -> None:
        """Put a saved round's adapter weights into the policy (resuming after that round)."""
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(self.model, load_file(str(folder / "adapter_model.safetensors")))


def load_policy(sft_checkpoint: str, data: str | None = None) -> Policy:
    """A recipes/sft.py LoRA output folder -> Policy (float32, trainable adapter). Refuses a full model (it
    would need a second copy as the reference) and a dataset whose catalog the index does not fit."""
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoTokenizer

    folder = Path(sft_checkpoint)
    if not (folder / "llmrec.json").exists() or not (folder / "item_index").is_dir():
        raise LlmrecError(f"{folder}: not an output folder of recipes/sft.py (no llmrec.json / item_index/)")
    if not (folder / "adapter_config.json").exists():
        raise LlmrecError(f"{folder}: preference alignment starts from a LoRA adapter (use_peft: true in SFT); "
                          "a fully fine-tuned model would need a second copy in memory as its reference")
    settings = read_json(folder / "llmrec.json")
    dataset = PreparedDataset.load(data or settings["prompts"]["data"])
    index = ItemIndex.load(folder / "item_index")
    index.check_dataset(dataset.items, str(dataset.path))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    # float32 on the training device: self-play beam search runs before any Trainer would move the model.
    model = AutoPeftModelForCausalLM.from_pretrained(folder, is_trainable=True, dtype=torch.float32)
    model.to(PartialState().device)
    if model.get_input_embeddings().weight.shape[0] < len(tokenizer):
        raise LlmrecError(f"{folder}: the model's vocabulary is smaller than its tokenizer's (mismatched base model)")
    return Policy(model, tokenizer, index, {**settings, "prompts": {**settings["prompts"], "data": str(dataset.path)}},
                  dataset)
