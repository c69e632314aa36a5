"""Run by test_training.py under torchrun with 2 CPU ranks (gloo): rank users with a model sharded by torch's
FSDP2 (`fully_shard`), so that every forward pass gathers each weight from both ranks. Rank 0 gets 3 users
and rank 1 gets 2, so rank 1 runs out of forward passes first: unless it keeps joining rank 0's parameter
gathers, rank 0 waits forever. Each rank writes the sharded result and an unsharded one-process reference."""

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from datasets import Dataset
from torch.distributed.fsdp import fully_shard
from transformers import AutoTokenizer

from llmrec.generation.ranking import model_rankings
from llmrec.indexing.trie import ItemTrie
from llmrec.hub.resolve import resolve_model
from llmrec.training.callbacks import rank_on_every_process

sys.path.insert(0, str(Path(__file__).parent))
from conftest import tiny_model  # noqa: E402

dist.init_process_group("gloo")
tok = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m"))
titles = ["Toy Story (1995)", "Heat (1995)", "Fargo (1996)", "Toy Story 2 (1999)", "Casino (1995)"]
trie = ItemTrie(
    [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in titles],
    vocab_size=len(tok),
    item_ids=[f"i{n}" for n in range(len(titles))],
)
said = ["I liked Heat (1995).", "Next?", "Anything with Toy Story (1995) in it, please, and quickly.", "Hi", "Fargo"]
rows = Dataset.from_list(
    [
        {"prompt": [{"role": "user", "content": text}], "user_id": f"u{n}", "target_item_id": "i0"}
        for n, text in enumerate(said)
    ]
)
model = tiny_model(len(tok))
alone = model_rankings(model, tok, trie, rows, k=3, batch_size=1, progress=False)  # before sharding: the reference
for layer in model.model.layers:
    fully_shard(layer)
fully_shard(model)
assert model.model.embed_tokens.weight.to_local().shape[0] < len(tok)  # each rank holds only part of the weights
together = rank_on_every_process(model, tok, trie, rows, k=3, batch_size=1, device=torch.device("cpu"))
Path(os.environ["LLMREC_DDP_DUMP"], f"rank{dist.get_rank()}.json").write_text(
    json.dumps({"alone": alone, "together": together})
)
dist.barrier()  # both ranks done before teardown: a rank torn down mid-exchange aborted once (SIGABRT) in CI
dist.destroy_process_group()
