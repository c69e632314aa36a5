"""Trie-constrained beam search vs transformers' generate(prefix_allowed_tokens_fn=...).

Same model (SmolLM2-135M-Instruct), same prompts (ml-100k validation users, next-title prompts), same
beam width K and the same catalog constraint (every movie title + EOS). The baseline is transformers'
own beam search with a Python callback that walks a dict trie for every beam at every step; ours masks
all beams with one tensor lookup per step. Length penalty 0 in both, so both rank by summed log-prob.
Prints items/s for each, the ratio, and how often the two top-K lists agree.

    python bench/bench_beam.py                # needs runs/ml-100k/dataset (make demo)
    python bench/bench_beam.py --users 32 --k 10
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from llmrec.data.dataset import PreparedDataset
from llmrec.generation.recommend import recommend
from llmrec.indexing.build import IndexBuildConfig, build_index
from llmrec.hub.resolve import resolve_model
from llmrec.prompts.build import PromptBuildConfig, build_prompt_datasets


def hf_beam_search(model, tok, prompts, sequences, item_ids, k, batch_size) -> list[list[str]]:
    trie: dict = {}
    for n, seq in enumerate(sequences):
        node = trie
        for t in seq:
            node = node.setdefault(t, {})
        node[None] = n
    item_of = {tuple(seq): item_ids[n] for n, seq in enumerate(sequences)}
    out = []
    tok.padding_side = "left"
    for start in range(0, len(prompts), batch_size):
        texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
                 for p in prompts[start : start + batch_size]]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        plen = enc["input_ids"].shape[1]

        def allowed(batch_id: int, ids: torch.Tensor, plen: int = plen) -> list[int]:
            node = trie
            for t in ids[plen:].tolist():
                node = node.get(t)
                if node is None:
                    return [tok.eos_token_id]
            return [t for t in node if t is not None] or [tok.eos_token_id]

        gen = model.generate(**enc, num_beams=k, num_return_sequences=k, max_new_tokens=max(map(len, sequences)),
                             prefix_allowed_tokens_fn=allowed, length_penalty=0.0, early_stopping=True,
                             do_sample=False, pad_token_id=tok.pad_token_id)
        for row in gen[:, plen:].view(-1, k, gen.shape[1] - plen).tolist():
            items = []
            for seq in row:
                cut = seq[: seq.index(tok.eos_token_id) + 1] if tok.eos_token_id in seq else seq
                items.append(item_of.get(tuple(cut)))
            out.append(items)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="runs/ml-100k/dataset")
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    a = parser.parse_args()
    torch.manual_seed(0)
    ds = PreparedDataset.load(a.data)
    index = build_index(IndexBuildConfig(data=a.data, output="", method="title"), ds)
    config = PromptBuildConfig(data=a.data, item_format="title", max_history=5, max_train_rows=1,
                               system_prompt="You recommend movies.")
    rows = build_prompt_datasets(config, ds, index)["valid"].select(range(a.users))
    path = resolve_model("smollm2-135m")
    tok, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path).eval()
    prompts = rows["prompt"]
    start = time.perf_counter()
    ours, _ = recommend(model, tok, prompts, index.trie(tok), a.k, a.batch_size, progress=False)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    with torch.no_grad():
        theirs = hf_beam_search(model, tok, prompts, index.token_ids(tok), index.item_ids, a.k, a.batch_size)
    t_hf = time.perf_counter() - start
    # transformers can return a hypothesis cut at max_new_tokens (no EOS): not an item, shown as None.
    not_items = sum(t.count(None) for t in theirs)
    overlap = sum(len(set(o) & set(t)) for o, t in zip(ours, theirs)) / (a.k * a.users)
    same5 = sum(o[:5] == t[:5] for o, t in zip(ours, theirs))
    n = a.users * a.k
    print(f"{a.users} users x top-{a.k}, catalog {len(index.item_ids)} titles, batch {a.batch_size}")
    print(f"transformers prefix_allowed_tokens_fn  {t_hf:7.1f} s  {n / t_hf:7.1f} items/s")
    print(f"llmrec trie_beam_search                {t_ours:7.1f} s  {n / t_ours:7.1f} items/s")
    print(f"speed-up {t_hf / t_ours:.2f}x; top-{a.k} overlap {overlap:.1%}; identical top-5 order for "
          f"{same5}/{a.users} users; transformers returned {not_items} cut-off non-items")


if __name__ == "__main__":
    main()
