"""`ItemIndex`: how each catalog item is spelled to the LLM, saved as a self-describing folder.

Folder layout:
  items.jsonl              one line per item: {"item_id", "codes", "tokens"}
  stats.json               n_items, collision rates, per-level codebook usage/perplexity, quality figures
  meta.json                method, settings, dataset fingerprint, new tokens, provenance
  quantizer.safetensors    RQ-VAE / RQ-KMeans weights (only for those methods)

Semantic-ID methods spell items with new tokens (`<a_12><b_3><c_201>`, one letter per level) that
`add_to_tokenizer` adds to a tokenizer as normal tokens; P5 numbers and titles are plain text. Either way
`token_ids` gives each item's token sequence ending in the tokenizer's EOS token, which marks where an
item ends (so "Toy Story" and "Toy Story 2" both stay reachable in the trie).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from llmrec.artifacts import atomic_dir, provenance, read_json, write_json, write_jsonl
from llmrec.errors import DataError, LlmrecError
from llmrec.indexing.trie import ItemTrie

SEMANTIC = ("rqvae", "rqkmeans", "collaborative")  # methods whose tokens are new vocabulary entries


def level_token(level: int, code: int) -> str:
    return f"<{chr(ord('a') + level)}_{code}>"


def code_tokens(codes: tuple[int, ...]) -> str:
    return "".join(level_token(level, c) for level, c in enumerate(codes))


def catalog_fingerprint(items: pa.Table) -> str:
    """sha256 over the catalog's item ids in order: an index fits a dataset iff the fingerprints match."""
    return hashlib.sha256("\n".join(items["item_id"].to_pylist()).encode()).hexdigest()


@dataclass
class ItemIndex:
    method: str
    item_ids: list[str]
    codes: list[tuple[int, ...]]
    tokens: list[str]
    fingerprint: str
    settings: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    quantizer: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(set(self.tokens)) != len(self.tokens):
            raise LlmrecError(f"{self.method} index: item token strings are not unique")
        self.item_of = {t: i for i, t in zip(self.item_ids, self.tokens)}
        self.tokens_of = dict(zip(self.item_ids, self.tokens))

    @property
    def new_tokens(self) -> list[str]:
        """Vocabulary entries this index needs, in level then code order (empty for numbers and titles)."""
        if self.method not in SEMANTIC:
            return []
        used = {(level, c) for code in self.codes for level, c in enumerate(code)}
        return [level_token(level, c) for level, c in sorted(used)]

    def check_dataset(self, items: pa.Table, where: str = "dataset") -> None:
        if catalog_fingerprint(items) != self.fingerprint:
            raise LlmrecError(
                f"{where}: this item index was built for another catalog ({len(self.item_ids)} items, fingerprint "
                f"{self.fingerprint[:12]}) than the dataset's ({items.num_rows} items, "
                f"{catalog_fingerprint(items)[:12]}); rebuild it with `llmrec index build --data ...`"
            )

    # -- tokenizer ---------------------------------------------------------------------------------------
    def add_to_tokenizer(self, tokenizer: Any, model: Any = None) -> int:
        """Add the index's tokens; resize `model`'s embeddings, new rows at the mean of the old ones
        (transformers' `mean_resizing`, Hewitt 2021). Returns the number of tokens added."""
        added = tokenizer.add_tokens(self.new_tokens)
        if model is not None and added:
            model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
        return added

    def token_ids(self, tokenizer: Any) -> list[list[int]]:
        """Each item's token ids, EOS-terminated. Fails if a semantic token is not in the tokenizer."""
        vocab = tokenizer.get_vocab()
        missing = [t for t in self.new_tokens if t not in vocab]
        if missing:
            raise LlmrecError(
                f"tokenizer lacks {len(missing)} of this index's tokens (e.g. {missing[0]}); "
                "call ItemIndex.add_to_tokenizer first"
            )
        ids = tokenizer(self.tokens, add_special_tokens=False)["input_ids"]
        return [seq + [tokenizer.eos_token_id] for seq in ids]

    def trie(self, tokenizer: Any) -> ItemTrie:
        return ItemTrie(self.token_ids(tokenizer), vocab_size=len(tokenizer), item_ids=self.item_ids)

    # -- persistence -------------------------------------------------------------------------------------
    def save(self, output: str | Path, *, overwrite: bool = False, config: dict | None = None) -> None:
        from safetensors.numpy import save_file

        with atomic_dir(output, overwrite=overwrite) as out:
            write_jsonl(out / "items.jsonl", ({"item_id": item, "codes": list(code), "tokens": tokens}
                                              for item, code, tokens in zip(self.item_ids, self.codes, self.tokens)))
            write_json(out / "stats.json", self.stats)
            meta = provenance(config)
            meta.update(method=self.method, settings=self.settings, catalog_fingerprint=self.fingerprint,
                        new_tokens=len(self.new_tokens))
            write_json(out / "meta.json", meta)
            if self.quantizer:
                save_file({k: np.ascontiguousarray(v) for k, v in self.quantizer.items()},
                          str(out / "quantizer.safetensors"))

    @classmethod
    def load(cls, path: str | Path) -> ItemIndex:
        path = Path(path)
        meta = read_json(path / "meta.json")
        item_ids, codes, tokens = [], [], []
        lines = path / "items.jsonl"
        with open(lines, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                try:
                    row = json.loads(line)
                    item_ids.append(str(row["item_id"]))
                    codes.append(tuple(int(c) for c in row["codes"]))
                    tokens.append(str(row["tokens"]))
                except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                    raise DataError(lines, f"not an item index row ({type(e).__name__}: {e})", line=n) from None
        quantizer = {}
        if (path / "quantizer.safetensors").exists():
            from safetensors.numpy import load_file

            quantizer = load_file(str(path / "quantizer.safetensors"))
        return cls(meta["method"], item_ids, codes, tokens, meta["catalog_fingerprint"], meta.get("settings", {}),
                   read_json(path / "stats.json"), quantizer)
