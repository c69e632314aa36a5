"""The LLM re-ranker's mechanics on tiny models: verbalizer, fusion, training rows, bf16, the recipe."""

import json

import numpy as np
import pytest
import torch

from conftest import tiny_model
from llmrec.collab import CollabConfig, CollabData, train_collab
from llmrec.errors import LlmrecError
from llmrec.rerank.evaluate import encode_rows, llm_scores
from llmrec.rerank.fusion import choose_lambda, fuse
from llmrec.rerank.rows import RerankRow, eval_rows, train_rows
from llmrec.rerank.train import RerankTrainer
from llmrec.rerank.verbalizer import READOUT, Verbalizer, letter_ids, render_prompt, shorten_title
from test_collab import planted_dataset

TITLES = [f"Film {i}" for i in range(12)]


@pytest.fixture(scope="module")
def model(smollm2_tokenizer):
    return tiny_model(len(smollm2_tokenizer)).eval()


def manual_letter_logprobs(model, tokenizer, messages, n):
    ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=False)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1]  # the whole sequence, no logits_to_keep
    return logits[letter_ids(tokenizer, n)].log_softmax(-1)


def manual_inline_logprobs(model, tokenizer, messages, n):
    """The " Yes" logit at the last token of each candidate line, found by decoding tokens one by one."""
    ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=False)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]  # (L, V), every position
    pieces = [tokenizer.decode(ids[: t + 1]) for t in range(len(ids))]
    lines = messages[-1]["content"].split("\n")[2 : 2 + n]  # after "Watched ..." and "Candidates:"
    ends = [next(t for t, text in enumerate(pieces) if text.endswith(line)) for line in lines]
    yes = tokenizer.encode(READOUT, add_special_tokens=False)[0]
    return logits[ends, yes].log_softmax(-1)


MANUAL = {"letter": manual_letter_logprobs, "inline": manual_inline_logprobs}


def test_letters_are_single_tokens(smollm2_tokenizer):
    assert smollm2_tokenizer.convert_ids_to_tokens(letter_ids(smollm2_tokenizer, 3)) == ["A", "B", "C"]


@pytest.mark.parametrize("scoring", ["letter", "inline"])
def test_verbalizer_equals_a_manual_forward_pass_in_batches_of_unequal_length(model, smollm2_tokenizer, scoring):
    rows = [RerankRow("u", [1, 2, 3], [4, 5, 6], [1, 2, 3], [3.0, 2.0, 1.0], 0),
            RerankRow("v", [7], [8, 9, 10], [1, 2, 3], [3.0, 2.0, 1.0], 1)]
    verbalizer = Verbalizer(smollm2_tokenizer, 3, scoring)
    prompts = encode_rows(verbalizer, rows, TITLES, True, "sys")
    assert len(prompts[0]["input_ids"]) != len(prompts[1]["input_ids"])  # left padding is exercised
    batched = verbalizer.scores(model, prompts, batch_size=2)
    for row, scores in zip(rows, batched):
        messages = render_prompt([TITLES[i] for i in row.history], [TITLES[i] for i in row.candidates], row.ranks,
                                 "sys")
        torch.testing.assert_close(scores, MANUAL[scoring](model, smollm2_tokenizer, messages, 3),
                                   atol=1e-5, rtol=1e-5)


def test_inline_positions_are_the_last_token_of_each_candidate_line(smollm2_tokenizer):
    verbalizer = Verbalizer(smollm2_tokenizer, 3, "inline")
    row = RerankRow("u", [1], [4, 10, 6], [2, 1, 3], [0.0] * 3, -1)
    [prompt] = encode_rows(verbalizer, [row], TITLES, True, None)
    ids, positions = prompt["input_ids"], prompt["positions"]
    assert [smollm2_tokenizer.decode(ids[: p + 1]).rsplit("\n", 1)[-1] for p in positions] == \
        ["A. Film 4 (rank 2)", "B. Film 10 (rank 1)", "C. Film 6 (rank 3)"]


@pytest.mark.parametrize("scoring", ["letter", "inline"])
def test_each_candidate_gets_the_score_of_the_line_it_is_printed_on(model, smollm2_tokenizer, scoring):
    row = RerankRow("u", [1, 2], [4, 5, 6, 7], [1, 2, 3, 4], [4.0, 3.0, 2.0, 1.0], -1)
    got = llm_scores(model, Verbalizer(smollm2_tokenizer, 4, scoring), [row], TITLES, False, None, orders=2)[0]
    forward = MANUAL[scoring](model, smollm2_tokenizer, render_prompt(
        ["Film 1", "Film 2"], ["Film 4", "Film 5", "Film 6", "Film 7"], None, None), 4)
    backward = MANUAL[scoring](model, smollm2_tokenizer, render_prompt(
        ["Film 1", "Film 2"], ["Film 7", "Film 6", "Film 5", "Film 4"], None, None), 4)
    # Film 4 is A in the first prompt and D in the second; Film 7 is D, then A.
    np.testing.assert_allclose(got[0], forward.numpy(), atol=1e-5)
    np.testing.assert_allclose(got[1], backward.numpy()[::-1], atol=1e-5)
    assert "A. Film 7" in render_prompt([], ["Film 7"], None, None)[0]["content"]


def test_long_titles_are_cut_but_keep_their_year():
    assert shorten_title("Dr. Strangelove or: How I Learned to Stop Worrying (1963)", 30) == \
        "Dr. Strangelove or: How (1963)"
    assert shorten_title("Toy Story (1995)", 30) == "Toy Story (1995)"
    assert shorten_title("A title without any year at all", 10) == "A title wi"


def test_lambda_zero_reproduces_the_retriever_and_lambda_is_chosen_on_labels():
    retriever = np.array([[5.0, 4.0, 4.0, 1.0], [2.0, 3.0, 1.0, 0.0]])  # a tie in row 0
    llm = np.array([[0.0, 9.0, 8.0, 7.0], [9.0, 0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(fuse(retriever, llm, 0.0), [[0, 1, 2, 3], [1, 0, 2, 3]])
    np.testing.assert_array_equal(fuse(retriever, llm, 100.0)[:, 0], [1, 0])
    lam, values = choose_lambda(retriever, llm, np.array([1, 0]), [0.0, 100.0], k=1)
    assert lam == 100.0 and values == {0.0: 0.0, 100.0: 1.0}  # the LLM puts both targets first


def test_training_rows_hold_no_held_out_item_and_come_from_training_prefix_candidates(tmp_path):
    ds = planted_dataset(tmp_path / "walk", n_items=30, length=12)
    retriever = tmp_path / "ease"
    train_collab(CollabConfig(data=str(ds.path), output=str(retriever), model="ease", lambdas=[1.0], candidates=8))
    data = CollabData.from_dataset(ds)
    rows, counts = train_rows(ds, data, str(retriever), 5, 4, 10_000, seed=0)
    file = {(r["user_id"], r["position"]): r for r in map(json.loads, (
        retriever / "candidates-train.jsonl").read_text().splitlines())}
    held_out = {}
    for split in ("valid", "test"):
        h = data.split(ds, split)
        for u, t in zip(h.users, h.targets):
            held_out.setdefault(u, set()).add(int(t))
    sequences = dict(zip(data.users, data.train))
    assert rows and counts["rows"] == len(rows)
    for row in rows:
        seq = sequences[row.user_id].tolist()
        position = len(seq[: seq.index(row.history[-1]) + 1])
        target = row.candidates[row.label]
        assert seq[position] == target and row.history == seq[max(0, position - 4) : position]
        assert not set(row.candidates) & held_out[row.user_id] and not set(row.history) & held_out[row.user_id]
        expected = [i for i in file[(row.user_id, position)]["ranked_items"]
                    if data.item_ids.index(i) not in held_out[row.user_id]][:5]
        assert sorted(data.item_ids[c] for c in row.candidates) == sorted(expected)
    assert np.bincount([r.label for r in rows], minlength=5).min() > 0  # shuffled: the answer moves
    test = eval_rows(ds, data, str(retriever), "test", 5, 4)
    assert [r.user_id for r in test] == data.split(ds, "test").users


@pytest.mark.parametrize("scoring", ["letter", "inline"])
def test_bf16_and_fp32_losses_agree_on_a_fixed_batch(smollm2_tokenizer, scoring):
    torch.manual_seed(0)
    model = tiny_model(len(smollm2_tokenizer))
    rows = [RerankRow("u", [1, 2, 3], [4, 5, 6, 7], [1, 2, 3, 4], [1.0] * 4, i % 4) for i in range(4)]
    verbalizer = Verbalizer(smollm2_tokenizer, 4, scoring)
    batch = verbalizer.collate([{**e, "label": r.label}
                                for e, r in zip(encode_rows(verbalizer, rows, TITLES, True, None), rows)])
    trainer = RerankTrainer.__new__(RerankTrainer)  # compute_loss needs only these two
    trainer.verbalizer, trainer.distill_weight = verbalizer, 0.0
    fp32 = trainer.compute_loss(model, batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = trainer.compute_loss(model, batch)
    torch.testing.assert_close(bf16, fp32, rtol=2e-2, atol=2e-2)
    assert fp32.item() == pytest.approx(np.log(4), abs=0.05)  # an untrained tiny model is near chance


def test_distillation_adds_the_kl_from_the_retrievers_softmax_to_the_llms(smollm2_tokenizer):
    model = tiny_model(len(smollm2_tokenizer), initializer_range=0.5).eval()
    rows = [RerankRow("u", [1, 2], [4, 5, 6], [1, 2, 3], [3.0, 1.0, 2.0], 2),
            RerankRow("v", [3], [7, 8, 9], [1, 2, 3], [0.5, 0.5, 2.0], 0)]
    verbalizer = Verbalizer(smollm2_tokenizer, 3, "inline")
    batch = verbalizer.collate([{**e, "label": r.label, "teacher": r.retriever_scores}
                                for e, r in zip(encode_rows(verbalizer, rows, TITLES, True, None), rows)])
    trainer = RerankTrainer.__new__(RerankTrainer)
    trainer.verbalizer, trainer.distill_weight = verbalizer, 0.0
    with torch.no_grad():
        ce = trainer.compute_loss(model, batch).item()
        trainer.distill_weight = 0.5
        both = trainer.compute_loss(model, batch).item()
        q = verbalizer.logits(model, batch).log_softmax(-1).exp().numpy()  # (B, N) the LLM's softmax
    kl = 0.0
    for row, q_row in zip(rows, q):  # by hand: KL(p || q), p = softmax of the standardised retriever scores
        s = np.array(row.retriever_scores)
        p = np.exp((s - s.mean()) / s.std())
        p /= p.sum()
        kl += float((p * np.log(p / q_row)).sum()) / len(rows)
    assert kl > 0.01 and both == pytest.approx(ce + 0.5 * kl, rel=1e-4)


def retriever_and_base(tmp_path, tokenizer):
    """A planted dataset, an EASE retriever with 5 candidates per user, a tiny base model folder."""
    ds = planted_dataset(tmp_path / "walk", n_items=30, length=12)
    retriever = tmp_path / "ease"
    train_collab(CollabConfig(data=str(ds.path), output=str(retriever), model="ease", lambdas=[1.0], candidates=5))
    base = tmp_path / "tiny"
    tiny_model(len(tokenizer)).save_pretrained(base)
    tokenizer.save_pretrained(base)
    return ds, retriever, base


def test_recipe_trains_and_reports_the_four_orders(tmp_path, smollm2_tokenizer):
    from llmrec.rerank.train import main

    ds, retriever, base = retriever_and_base(tmp_path, smollm2_tokenizer)
    out = tmp_path / "rerank"
    main(["--data", str(ds.path), "--retriever", str(retriever), "--n_candidates", "5", "--max_train_rows", "16",
          "--model_name_or_path", str(base), "--use_peft", "--lora_r", "4", "--lora_target_modules", "q_proj",
          "v_proj", "--output_dir", str(out), "--max_steps", "2", "--per_device_train_batch_size", "4",
          "--report_to", "none", "--lambdas", "0", "1", "--use_cpu"])
    result = json.loads((out / "llmrec.json").read_text())["result"]
    assert [line["name"] for line in result["test"]][:5] == ["most-popular", "retriever", "random order",
                                                             "llm order, 1 ordering", "llm order"]
    assert all("p_vs_most_popular" in line for line in result["test"][1:])
    assert result["fusion_lambda"] in (0.0, 1.0) and (out / "adapter_config.json").exists()
    assert "lambda" in (out / "README.md").read_text()
    assert result["train_rows"]["rows"] == 16 and result["score_seconds"] > 0
    # Each order is also a rankings file that `llmrec eval rank` scores to the same figure.
    from llmrec.cli import run

    for line, kind in zip(result["test"][1:], ("retriever", "random", "llm-1-ordering", "llm", "fused")):
        report = tmp_path / f"report-{kind}"
        assert run("llmrec.evaluation.rank", ["--data", str(ds.path), "--rankings",
                                              str(out / f"rankings-test-{kind}.jsonl"), "--output", str(report)]) == 0
        assert json.loads((report / "metrics.json").read_text())["ndcg@10"] == line["ndcg@10"]
    # --eval_only scores the saved adapter again: the same LLM scores, so the same test comparison.
    main(["--data", str(ds.path), "--retriever", str(retriever), "--n_candidates", "5", "--max_train_rows", "16",
          "--model_name_or_path", str(base), "--use_peft", "--output_dir", str(out), "--lambdas", "0", "1",
          "--report_to", "none", "--use_cpu", "--eval_only", "true"])
    again = json.loads((out / "llmrec.json").read_text())["result"]
    assert again["test"] == result["test"] and again["loss_history"] == result["loss_history"]


def test_a_sample_of_users_and_the_untrained_reference_line(tmp_path, smollm2_tokenizer):
    from llmrec.rerank.train import main

    ds, retriever, base = retriever_and_base(tmp_path, smollm2_tokenizer)
    out = tmp_path / "rerank"
    main(["--data", str(ds.path), "--retriever", str(retriever), "--n_candidates", "5", "--max_train_rows", "8",
          "--model_name_or_path", str(base), "--use_peft", "--lora_r", "4", "--lora_target_modules", "q_proj",
          "v_proj", "--output_dir", str(out), "--max_steps", "1", "--report_to", "none", "--use_cpu", "--scoring",
          "inline", "--distill_weight", "1", "--max_eval_users", "7", "--score_untrained", "true", "--lambdas", "0"])
    result = json.loads((out / "llmrec.json").read_text())["result"]
    names = [line["name"] for line in result["test"]]
    assert names == ["most-popular", "retriever", "random order", "untrained llm order", "llm order, 1 ordering",
                     "llm order", "fused (lambda 0)"]
    assert result["test_users"] == 7 and "scoring: inline" in (out / "README.md").read_text()
    users = [json.loads(x)["user_id"] for x in (out / "rankings-test-llm.jsonl").read_text().splitlines()]
    assert len(users) == 7 and len(set(users)) == 7
    fused, retriever_line = result["test"][-1], result["test"][1]
    assert fused["ndcg@10"] == retriever_line["ndcg@10"]  # lambda 0 gives back the retriever, on the sample too
    # --zero_shot: the base model is the scorer, so its own order is the untrained line above, and nothing trains.
    zero = tmp_path / "zero-shot"
    main(["--data", str(ds.path), "--retriever", str(retriever), "--n_candidates", "5", "--model_name_or_path",
          str(base), "--output_dir", str(zero), "--report_to", "none", "--use_cpu", "--scoring", "inline",
          "--max_eval_users", "7", "--lambdas", "0", "--zero_shot", "true"])
    shot = json.loads((zero / "llmrec.json").read_text())["result"]
    untrained = next(line for line in result["test"] if line["name"] == "untrained llm order")
    llm_order = next(line for line in shot["test"] if line["name"] == "llm order")
    assert llm_order["ndcg@10"] == untrained["ndcg@10"] and llm_order["recall@10"] == untrained["recall@10"]
    assert shot["train_seconds"] == 0 and not (zero / "adapter_config.json").exists()
    with pytest.raises(LlmrecError, match="zero_shot"):
        main(["--data", str(ds.path), "--retriever", str(retriever), "--output_dir", str(tmp_path / "y"),
              "--zero_shot", "true", "--score_untrained", "true"])
    with pytest.raises(LlmrecError, match="score_orders"):
        main(["--data", str(ds.path), "--retriever", str(retriever), "--output_dir", str(tmp_path / "x"),
              "--score_orders", "3"])
    assert not (tmp_path / "x").exists()
