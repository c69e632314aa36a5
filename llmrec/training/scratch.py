"""A TIGER-style model from scratch: a vocabulary of only the item tokens and a few specials.

TIGER (Rajput et al., "Recommender Systems with Generative Retrieval", NeurIPS 2023, Sec. 3.2) feeds a
sequence model nothing but semantic-ID tokens (~1k of them) and decodes the next item's ID. A model trained
from scratch has no use for a pretrained tokenizer's 49k words: they would only widen its embedding and
output layers (at hidden size 128, 49k rows are 6.3M parameters; the item tokens of ml-100k's RQ-KMeans
index, 3 x 256 codes, are 0.1M). So `scratch_tokenizer` builds a word-level tokenizer (Hugging Face
`tokenizers`) whose vocabulary is exactly `SPECIALS` + the index's tokens, with a chat template that keeps
only the contents (system turns dropped): `<history tokens><sep><target tokens><eos>`. The rest of the
pipeline (TRL's SFTTrainer on chat rows, the trie, beam search) sees an ordinary tokenizer.
"""

from __future__ import annotations

from typing import Any

from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

from llmrec.errors import LlmrecError
from llmrec.indexing.item_index import ItemIndex

SPECIALS = ["<pad>", "<unk>", "<sep>", "<eos>"]
CHAT_TEMPLATE = ("{%- for m in messages -%}"
                 "{%- if m['role'] == 'user' -%}{{ m['content'] }}<sep>"
                 "{%- elif m['role'] == 'assistant' -%}{{ m['content'] }}<eos>{%- endif -%}"
                 "{%- endfor -%}")


def scratch_tokenizer(index: ItemIndex) -> PreTrainedTokenizerFast:
    """A tokenizer whose vocabulary is SPECIALS followed by the index's item tokens, nothing else."""
    if not index.new_tokens:
        raise LlmrecError(f"model_init scratch needs a semantic-ID index (rqvae, rqkmeans, collaborative) whose "
                          f"tokens make the vocabulary; the {index.method} index spells items in words")
    vocab = {t: i for i, t in enumerate([*SPECIALS, *index.new_tokens])}
    core = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>",
                                        eos_token="<eos>", sep_token="<sep>", chat_template=CHAT_TEMPLATE)
    tokenizer.add_tokens(index.new_tokens)  # matched inside "<a_1><b_2>" too (already in the vocabulary)
    return tokenizer


def scratch_model(architecture: str, tokenizer: Any, hidden_size: int, layers: int, heads: int) -> Any:
    """A new causal LM of `architecture`'s family (a folder or hub id: its config only), sized as asked,
    with embedding and output layers of exactly len(tokenizer) rows."""
    config = AutoConfig.from_pretrained(architecture)
    config.update({"hidden_size": hidden_size, "num_hidden_layers": layers, "num_attention_heads": heads,
                   "num_key_value_heads": heads, "intermediate_size": 4 * hidden_size, "vocab_size": len(tokenizer),
                   "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id,
                   "bos_token_id": None})
    if hasattr(config, "head_dim"):
        config.head_dim = hidden_size // heads
    return AutoModelForCausalLM.from_config(config)


def check_in_vocabulary(tokenizer: Any, prompts: list[list[dict[str, str]]], family: str) -> None:
    """Refuse rows whose text falls outside the item vocabulary (it would train on <unk>)."""
    for row, prompt in enumerate(prompts):
        text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if tokenizer.unk_token_id in ids:
            words = [w for w, i in zip(text.split(), ids) if i == tokenizer.unk_token_id] or text.split()
            raise LlmrecError(f"training row {row} ({family}): text outside the scratch vocabulary (item tokens "
                              f"only), e.g. {words[0][:40]!r}; use families: [item_sequence] and item_format: id")
