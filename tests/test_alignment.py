"""Preference alignment on a tiny SFT checkpoint: the S-DPO loss, negative strategies, rounds, bad input."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from llmrec.alignment.negatives import STRATEGIES, NegativeSource, pick_negatives
from llmrec.alignment.policy import load_policy
from llmrec.alignment.preferences import preference_rows
from llmrec.alignment.softmax_dpo import softmax_dpo_loss
from llmrec.alignment.train import main as dpo_main
from llmrec.collab.ease import EASE
from llmrec.collab.sequences import CollabData
from llmrec.errors import LlmrecError
from llmrec.training.sft import main as sft_main

from conftest import synthetic_dataset, tiny_model


@pytest.fixture(scope="module")
def sft(tmp_path_factory, smollm2_tokenizer) -> Path:
    """A synthetic dataset and a 3-step LoRA SFT checkpoint of a tiny Llama on next-title prompts."""
    root = tmp_path_factory.mktemp("align")
    synthetic_dataset(root, n_users=20, n_items=24)
    tiny_model(len(smollm2_tokenizer)).save_pretrained(root / "tiny")
    smollm2_tokenizer.save_pretrained(root / "tiny")
    sft_main(["--data", str(root / "ds"), "--model_name_or_path", str(root / "tiny"), "--output_dir",
              str(root / "sft"), "--max_steps", "3", "--per_device_train_batch_size", "4", "--learning_rate", "1e-2",
              "--save_strategy", "no", "--report_to", "none", "--ranking_eval_users", "2", "--ranking_k", "3",
              "--max_history", "3", "--dtype", "float32", "--bf16", "false", "--use_peft", "--lora_r", "4",
              "--item_format", "title", "--final_eval", "false", "--ranking_eval_at_start", "false"])
    return root / "sft"


def dpo_argv(sft: Path, out: Path, *extra: str) -> list[str]:
    """A 2-step, 8-prompt fp32 run (pinned numbers must not depend on this CPU's bf16)."""
    return ["--sft_checkpoint", str(sft), "--output_dir", str(out), "--max_steps", "2",
            "--per_device_train_batch_size", "4", "--learning_rate", "5e-3", "--logging_steps", "1",
            "--save_strategy", "no", "--report_to", "none", "--ranking_eval_users", "2", "--ranking_k", "3",
            "--max_train_rows", "8", "--bf16", "false", "--max_length", "256", *extra]


def test_softmax_dpo_loss_equals_hand_computed_values():
    chosen, rejected, beta = torch.tensor([0.5, -1.0]), torch.tensor([[0.1, 0.3], [-1.0, 2.0]]), 2.0
    by_hand = [
        -math.log(1 / (1 + math.exp(math.log(math.exp(2 * (0.1 - 0.5)) + math.exp(2 * (0.3 - 0.5)))))),
        -math.log(1 / (1 + math.exp(math.log(math.exp(0.0) + math.exp(2 * 3.0))))),
    ]
    torch.testing.assert_close(softmax_dpo_loss(chosen, rejected, beta), torch.tensor(by_hand))
    # one negative: DPO's sigmoid loss, -log sigmoid(beta (r_pos - r_neg))
    one = softmax_dpo_loss(chosen, rejected[:, :1], beta)
    torch.testing.assert_close(one, -torch.nn.functional.logsigmoid(beta * (chosen - rejected[:, 0])))


def test_softmax_dpo_with_one_negative_equals_trl_dpo_on_the_same_batch(sft, tmp_path):
    from trl import DPOTrainer

    from llmrec.alignment.config import RecDPOConfig
    from llmrec.alignment.softmax_dpo import SoftmaxDPOTrainer

    losses = {}
    for cls in (DPOTrainer, SoftmaxDPOTrainer):
        policy = load_policy(str(sft))
        rows = policy.train_rows(4, seed=0)
        negatives = [[i for i in policy.dataset.items["item_id"].to_pylist()
                      if i != t and i not in h][:1] for t, h in zip(rows["target_item_id"], rows["history_item_ids"])]
        pairs, _ = preference_rows(rows, negatives, policy.index)
        args = RecDPOConfig(output_dir=str(tmp_path / cls.__name__), per_device_train_batch_size=4, bf16=False,
                            report_to="none", beta=0.5)
        trainer = cls(model=policy.model, args=args, train_dataset=pairs, processing_class=policy.tokenizer)
        with torch.no_grad():  # move the policy away from TRL's reference copy, the same way for both trainers
            for name, p in sorted(policy.model.named_parameters()):
                if ".default." in name and "lora_B" in name:
                    p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
        trainer.model.eval()
        with torch.no_grad():
            losses[cls.__name__] = trainer.compute_loss(trainer.model, dict(batch)).item()
    assert losses["DPOTrainer"] != pytest.approx(math.log(2))
    assert losses["SoftmaxDPOTrainer"] == pytest.approx(losses["DPOTrainer"], rel=1e-5)


def test_collator_stacks_chosen_then_each_negative_for_every_row():
    from llmrec.alignment.softmax_dpo import SoftmaxPreferenceCollator

    rows = [{"prompt_ids": [b], "chosen_ids": [10 + b], "rejected_list_ids": [[20 + b], [30 + b, 31]]}
            for b in range(3)]
    batch = SoftmaxPreferenceCollator(pad_token_id=0)(rows)  # B = 3, K = 2: 9 sequences
    assert int(batch["group_size"]) == 3
    assert batch["input_ids"].tolist() == [[0, 10, 0], [1, 11, 0], [2, 12, 0], [0, 20, 0], [1, 21, 0], [2, 22, 0],
                                           [0, 30, 31], [1, 31, 31], [2, 32, 31]]
    assert batch["completion_mask"].tolist()[6] == [0, 1, 1] and batch["attention_mask"].tolist()[0] == [1, 1, 0]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_returns_n_distinct_items_never_the_target_or_a_training_item(sft, strategy):
    policy = load_policy(str(sft))
    rows = policy.train_rows(12, seed=0)
    data = CollabData.from_dataset(policy.dataset)
    ease = EASE(data.n_items, lam=10.0).fit(data.train)
    target_first = {}

    def generate(rows, k):  # a policy that ranks the target and the user's own items first: all must be skipped
        out = []
        for u, t in zip(rows["user_id"], rows["target_item_id"]):
            seen = [data.item_ids[c] for c in data.train[data.users.index(u)]]
            target_first[u] = [t, *seen]
            out.append([t, *seen, *[i for i in data.item_ids if i not in seen and i != t]][:k + len(seen) + 1])
        return out

    source = NegativeSource(data, scorer=ease, generate=generate)
    negatives, counts = pick_negatives(strategy, rows, 3, source, np.random.default_rng(0), pool_size=6)
    assert counts == {"rows": 12, "filled_at_random": 0}
    for u, t, negs in zip(rows["user_id"], rows["target_item_id"], negatives):
        seen = {data.item_ids[c] for c in data.train[data.users.index(u)]}
        assert len(set(negs)) == 3 and t not in negs and not seen & set(negs)
    if strategy == "self_play":  # the policy's best wrong answers, in its order
        unseen = [i for i in data.item_ids if i not in target_first[rows["user_id"][0]]]
        assert negatives[0] == unseen[:3]
    if strategy == "reward_model":  # the 3 of the policy's allowed generations the classic model scores lowest
        code = {i: c for c, i in enumerate(data.item_ids)}
        history = np.array([code[i] for i in rows["history_item_ids"][0]])
        scores = ease.score([rows["user_id"][0]], [history])[0]
        pool = [i for i in generate(rows.select([0]), 6)[0] if i not in target_first[rows["user_id"][0]]][:6]
        assert negatives[0] == sorted(pool, key=lambda i: scores[code[i]].item())[:3]


def test_a_pool_too_small_is_filled_at_random_and_counted(sft):
    policy = load_policy(str(sft))
    rows = policy.train_rows(4, seed=0)
    source = NegativeSource(CollabData.from_dataset(policy.dataset), generate=lambda rows, k: [[] for _ in rows])
    negatives, counts = pick_negatives("self_play", rows, 2, source, np.random.default_rng(0))
    assert counts == {"rows": 4, "filled_at_random": 8} and all(len(n) == 2 for n in negatives)


def test_rows_without_negatives_or_with_the_chosen_rejected_are_skipped_and_counted(sft):
    policy = load_policy(str(sft))
    rows = policy.train_rows(3, seed=0)
    targets, other = rows["target_item_id"], next(i for i in policy.index.item_ids if i not in rows["target_item_id"])
    pairs, skipped = preference_rows(rows, [[], [targets[1], other], [other]], policy.index)
    assert skipped == {"not_an_item_answer": 0, "no_negatives": 1, "chosen_among_rejected": 1} and len(pairs) == 1
    assert pairs[0]["rejected_list"] == [policy.index.tokens_of[other]]
    assert pairs[0]["chosen"][0]["content"] == policy.index.tokens_of[targets[2]]


def test_sdpo_rounds_write_their_data_grow_the_margin_and_resume(sft, tmp_path, capsys):
    out = tmp_path / "sdpo"
    dpo_main(dpo_argv(sft, out, "--loss", "sdpo", "--negatives", "self_play", "--rounds", "2", "--pool_size", "5",
                      "--max_steps", "4", "--learning_rate", "2e-2"))
    for r in (1, 2):
        rows = [json.loads(line) for line in (out / "rounds" / f"round-{r}" / "preference.jsonl").open()]
        assert len(rows) == 8 and all(len(row["rejected_list"]) == 3 for row in rows)
        assert all(row["target_item_id"] not in row["rejected_item_ids"] for row in rows)
    settings = json.loads((out / "llmrec.json").read_text())
    log = settings["result"]["rounds"][0]["log"]
    assert log[0]["loss"] == pytest.approx(math.log(4), abs=1e-4)  # policy = reference: log(1 + K)
    assert log[0]["rewards/margins"] == pytest.approx(0, abs=1e-6) and log[-1]["rewards/margins"] > 0.01
    second = settings["result"]["rounds"][1]["log"]  # round 2's reference is round 1's policy: margins restart at 0
    assert second[0]["loss"] == pytest.approx(math.log(4), abs=1e-4)
    assert second[0]["rewards/margins"] == pytest.approx(0, abs=1e-6)
    assert settings["alignment"]["negatives"] == "self_play" and "prompts" in settings
    card = (out / "README.md").read_text()
    assert "softmax-DPO" in card and "negatives `self_play` (3 per prompt, pool 5)" in card
    # the folder is a checkpoint like SFT's: eval rank scores it
    from llmrec.evaluation.rank import main as eval_main

    eval_main(["--checkpoint", str(out), "--data", str(sft.parent / "ds"), "--split", "test", "--ks", "3",
               "--output", str(tmp_path / "report")])
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["users_evaluated"] == 20
    # a rerun skips finished rounds: same result, no training
    before = (out / "adapter_model.safetensors").read_bytes()
    capsys.readouterr()
    dpo_main(dpo_argv(sft, out, "--loss", "sdpo", "--negatives", "self_play", "--rounds", "2", "--pool_size", "5",
                      "--max_steps", "4", "--learning_rate", "2e-2"))
    assert "round 1" not in capsys.readouterr().out
    assert (out / "adapter_model.safetensors").read_bytes() == before
    with pytest.raises(LlmrecError, match="round-1 was trained with other settings"):  # not silently reused
        dpo_main(dpo_argv(sft, out, "--loss", "sdpo", "--negatives", "self_play", "--rounds", "2", "--pool_size",
                          "5", "--max_steps", "4", "--learning_rate", "2e-2", "--beta", "0.5"))


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--negatives", "reward_model"), "need a classic model folder"),
        (("--n_negatives", "0"), "--n_negatives must be at least 1"),
        (("--loss", "sdpo", "--precompute_ref_log_probs", "true"), "reference log-probs are computed per batch"),
        (("--loss", "sdpo", "--loss_type", "ipo"), "replaces the DPO loss"),
        (("--loss", "sdpo", "--ld_alpha", "0.5"), "--ld_alpha 0.5"),
    ],
)
def test_bad_options_fail_before_training(sft, tmp_path, extra, message):
    with pytest.raises(LlmrecError, match=message):
        dpo_main(dpo_argv(sft, tmp_path / "out", *extra))
    assert not (tmp_path / "out").exists()  # refused before any round wrote its data


def test_a_checkpoint_that_is_not_a_lora_sft_output_is_refused(sft, tmp_path):
    with pytest.raises(LlmrecError, match="not an output folder of recipes/sft.py"):
        load_policy(str(tmp_path))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "llmrec.json").write_bytes((sft / "llmrec.json").read_bytes())
    (tmp_path / "full" / "item_index").mkdir()
    with pytest.raises(LlmrecError, match="starts from a LoRA adapter"):
        load_policy(str(tmp_path / "full"))


def test_a_negatives_model_of_another_catalog_is_refused(sft, tmp_path):
    from llmrec.collab.train import main as collab_main

    other = synthetic_dataset(tmp_path, n_users=10, n_items=30)
    collab_main(["--model", "ease", "--data", str(other.path), "--output", str(tmp_path / "ease")])
    with pytest.raises(LlmrecError, match="catalog"):
        dpo_main(dpo_argv(sft, tmp_path / "out", "--negatives", "reward_model", "--negatives_model",
                          str(tmp_path / "ease")))


def test_semantic_id_items_align_the_same_way(sft, tmp_path, smollm2_tokenizer):
    from llmrec.data.dataset import PreparedDataset
    from llmrec.indexing.build import IndexBuildConfig, build_index

    data = sft.parent / "ds"
    build_index(IndexBuildConfig(data="", output="", method="rqkmeans", levels=2, codebook_size=8),
                PreparedDataset.load(data)).save(tmp_path / "index")
    sft_main(["--data", str(data), "--index", str(tmp_path / "index"), "--model_name_or_path",
              str(sft.parent / "tiny"), "--output_dir", str(tmp_path / "sft"), "--max_steps", "2",
              "--per_device_train_batch_size", "4", "--save_strategy", "no", "--report_to", "none",
              "--max_history", "3", "--dtype", "float32", "--bf16", "false", "--use_peft", "--lora_r", "4",
              "--final_eval", "false", "--ranking_eval_at_start", "false"])
    out = tmp_path / "sdpo"
    dpo_main(dpo_argv(tmp_path / "sft", out, "--loss", "sdpo", "--negatives", "self_play", "--pool_size", "4"))
    row = json.loads((out / "rounds" / "round-1" / "preference.jsonl").open().readline())
    assert all(s.startswith("<a_") for s in row["rejected_list"]) and row["chosen"][0]["content"].startswith("<a_")
    log = json.loads((out / "llmrec.json").read_text())["result"]["rounds"][0]["log"]
    assert log[0]["loss"] == pytest.approx(math.log(4), abs=1e-4)
