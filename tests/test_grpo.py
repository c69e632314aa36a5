"""GRPO with ranking rewards on a tiny SFT checkpoint: rewards by hand, trie rollouts, advantages, training,
save/load, 2 CPU ranks, bad input."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from llmrec.alignment.policy import load_policy
from llmrec.errors import LlmrecError
from llmrec.generation.ranking import model_rankings
from llmrec.rl.config import RecGRPOConfig, RLArguments
from llmrec.rl.rewards import Collaborative, RankAware, Semantic, hit
from llmrec.rl.rollout import TrieRollout
from llmrec.rl.train import main as grpo_main
from llmrec.rl.train import rl_rows
from llmrec.rl.trainer import RecGRPOTrainer

from conftest import synthetic_dataset, tiny_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sft(tmp_path_factory, smollm2_tokenizer) -> Path:
    """A synthetic dataset (users' next item follows their last one around the catalog) and a 3-step LoRA SFT
    checkpoint of a tiny Llama on next-title prompts, initialised so that LoRA can sharpen its preferences."""
    from llmrec.training.sft import main as sft_main

    root = tmp_path_factory.mktemp("grpo")
    synthetic_dataset(root, n_users=20, n_items=24)
    tiny_model(len(smollm2_tokenizer), initializer_range=0.5).save_pretrained(root / "tiny")
    smollm2_tokenizer.save_pretrained(root / "tiny")
    sft_main(["--data", str(root / "ds"), "--model_name_or_path", str(root / "tiny"), "--output_dir",
              str(root / "sft"), "--max_steps", "3", "--per_device_train_batch_size", "4", "--learning_rate", "1e-2",
              "--save_strategy", "no", "--report_to", "none", "--ranking_eval_users", "2", "--ranking_k", "3",
              "--max_history", "3", "--dtype", "float32", "--bf16", "false", "--use_peft", "--lora_r", "4",
              "--lora_dropout", "0", "--lora_target_modules", "all-linear", "--item_format", "title",
              "--final_eval", "false", "--ranking_eval_at_start", "false"])
    return root / "sft"


def grpo_argv(sft: Path, out: Path, *extra: str) -> list[str]:
    """2 prompts x G=4 rollouts per step, fp32 (numbers must not depend on this CPU's bf16)."""
    return ["--sft_checkpoint", str(sft), "--output_dir", str(out), "--max_steps", "2", "--num_generations", "4",
            "--per_device_train_batch_size", "8", "--learning_rate", "1e-2", "--logging_steps", "1",
            "--save_strategy", "no", "--report_to", "none", "--ranking_eval_users", "4", "--ranking_k", "3",
            "--max_train_rows", "8", "--bf16", "false", "--beta", "0.001", *extra]


class FakeTrainer:
    """What a rollout reads from TRL's trainer: the model through the accelerator, and the metric logger."""

    def __init__(self, model):
        self.accelerator = SimpleNamespace(unwrap_model=lambda m: m)
        self.model, self.metrics = model, {}

    def _log_metric(self, name, value):
        self.metrics[name] = value


def test_rank_aware_reward_equals_hand_computed_values():
    logged = {}
    reward = RankAware(group_size=4)
    items = ["a", "b", "t", "c", "x", "y", "z", "w"]  # group 1 holds its target at rank 2; group 2 misses
    targets = ["t"] * 4 + ["q"] * 4
    out = reward(item_id=items, target_item_id=targets, beam_rank=[0, 1, 2, 3] * 2,
                 log_metric=lambda k, v: logged.update({k: v}))
    norm = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4) + 1 / math.log2(5)  # 2.5616
    assert out[:4] == pytest.approx([-1 / norm, -(1 / math.log2(3)) / norm, 0.0, -(1 / math.log2(5)) / norm])
    assert out[:4] == pytest.approx([-0.39038, -0.24630, 0.0, -0.16813], abs=1e-5)
    assert out[4:] == [0.0] * 4 and logged == {"hit_groups": 0.5}


def test_hit_semantic_and_collaborative_rewards():
    assert hit(item_id=["a", "t", None], target_item_id=["t", "t", "t"]) == [0.0, 1.0, 0.0]
    vectors = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    semantic = Semantic(vectors, ["a", "b", "c"])
    assert semantic(item_id=["a", "b", "c"], target_item_id=["c", "c", "c"]) == pytest.approx(
        [1 / math.sqrt(2), 1 / math.sqrt(2), 1.0])

    class Scores:  # a classic model scoring item position c with 10 * c, whatever the user
        def score_items(self, users, histories, items):
            return torch.as_tensor(items, dtype=torch.float32) * 10

    collab = Collaborative(Scores(), ["a", "b", "c", "d"], group_size=2)
    out = collab(item_id=["a", "c", "d", "d"], user_id=["u", "u", "v", "v"], history_item_ids=[["b"]] * 4)
    assert out == pytest.approx([-1.0, 1.0, 0.0, 0.0])  # standardised per group; an all-equal group is 0


def test_beam_rollout_returns_g_distinct_valid_items_whatever_the_generation_config(sft):
    policy = load_policy(str(sft))
    rows = rl_rows(policy, 2, seed=0)[0]
    prompts = [p for p in rows["prompt"] for _ in range(4)]
    rollout = TrieRollout(policy.index, policy.tokenizer, group_size=4)
    trainer = FakeTrainer(policy.model)
    out = rollout(prompts, trainer)
    expected = model_rankings(policy.model, policy.tokenizer, policy.trie, rows, k=4, progress=False)
    assert out["item_id"] == [i for r in expected for i in r["ranked_items"]]  # the beam's top 4, in order
    assert out["beam_rank"] == [0, 1, 2, 3, 0, 1, 2, 3] and out["logprobs"] is None
    assert all(len(set(out["item_id"][s : s + 4])) == 4 for s in (0, 4))
    tokens = policy.index.token_ids(policy.tokenizer)
    assert out["completion_ids"] == [tokens[policy.index.item_ids.index(i)] for i in out["item_id"]]
    assert trainer.metrics["rollout/invalid_items"] == 0
    text = policy.tokenizer.apply_chat_template(prompts[0], tokenize=False, add_generation_prompt=True)
    assert out["prompt_ids"][0] == policy.tokenizer(text, add_special_tokens=False)["input_ids"]
    # an Instruct model's generation_config asking for sampling must not reach the rollout (MiniOneRec #49)
    policy.model.generation_config.update(do_sample=True, top_k=1, top_p=0.1, temperature=3.0)
    assert rollout(prompts, trainer)["item_id"] == out["item_id"]
    with pytest.raises(LlmrecError, match="partial group"):
        rollout(prompts[:6], trainer)


def test_sampled_rollouts_are_valid_items_ranked_by_their_log_probability(sft):
    policy = load_policy(str(sft))
    rows = rl_rows(policy, 2, seed=0)[0]
    policy.model.generation_config.update(do_sample=True, top_k=1)  # would make every sample the same item
    rollout = TrieRollout(policy.index, policy.tokenizer, group_size=6, mode="sample")
    torch.manual_seed(0)
    out = rollout([p for p in rows["prompt"] for _ in range(6)], FakeTrainer(policy.model))
    assert all(i in policy.index.tokens_of for i in out["item_id"])  # valid items only (the trie)
    assert len(set(out["item_id"])) > 2  # top_k=1 was not applied
    for s in (0, 6):
        assert sorted(out["beam_rank"][s : s + 6]) == list(range(6))


def test_a_group_whose_rewards_are_all_equal_gets_zero_advantage(sft, tmp_path):
    policy = load_policy(str(sft))
    rows = rl_rows(policy, 2, seed=0)[0]
    top = TrieRollout(policy.index, policy.tokenizer, 4).decode(policy.model, _encode(policy, rows))[0]
    items = policy.index.item_ids
    missed = next(i for i in items if items.index(i) not in top[1].tolist())
    rows = rows.map(lambda r, n: {"target_item_id": items[int(top[0, 1])] if n == 0 else missed}, with_indices=True)
    args = RecGRPOConfig(output_dir=str(tmp_path), num_generations=4, per_device_train_batch_size=8, beta=0.0,
                         report_to="none", bf16=False, max_steps=1)
    trainer = RecGRPOTrainer(policy, RLArguments(sft_checkpoint=str(sft)), args, rows)
    batch = trainer._generate_and_score_completions([dict(r) for r in rows for _ in range(4)])
    advantages = batch["advantages"].view(2, 4)  # (prompts, G)
    assert torch.equal(advantages[1], torch.zeros(4))  # no hit: every reward 0, no signal
    assert advantages[0, 1] > 0 and (advantages[0, [0, 2, 3]] < 0).all()  # the hit (beam rank 1) goes up


def _encode(policy, rows):
    from llmrec.generation.recommend import encode_chat_prompts

    return encode_chat_prompts(policy.tokenizer, rows["prompt"])


def test_grpo_moves_found_targets_to_the_top_saves_and_reloads(sft, tmp_path, monkeypatch):
    captured = {}
    original = RecGRPOTrainer.train

    def train(self, *args, **kwargs):
        captured["model"] = self.model
        return original(self, *args, **kwargs)

    def top_ranked(model, rows):  # training prompts whose next item the model ranks first
        return sum(r["ranked_items"][0] == r["target_item_id"]
                   for r in model_rankings(model, policy.tokenizer, policy.trie, rows, 8, progress=False))

    policy = load_policy(str(sft))
    rows = rl_rows(policy, 8, seed=0)[0]  # what the run below trains on (same sample, same seed)
    before = top_ranked(policy.model, rows)
    monkeypatch.setattr(RecGRPOTrainer, "train", train)
    out = tmp_path / "grpo"
    grpo_main(grpo_argv(sft, out, "--max_steps", "8", "--max_train_rows", "8", "--per_device_train_batch_size", "64",
                        "--num_generations", "8"))
    settings = json.loads((out / "llmrec.json").read_text())
    log = settings["result"]["log"]
    # Beam rollouts reward a target only inside the model's top G: the hit moves up to rank 0 (MiniOneRec's
    # sharpening); a target outside the beam gets no signal, so the share of groups with a hit need not rise.
    assert len(log) == 8 and 0 < log[0]["hit_groups"] < 1
    assert top_ranked(captured["model"], rows) >= before + 2
    assert all(e["rollout/invalid_items"] == 0 for e in log) and settings["result"]["invalid_items"] == 0
    assert "kl" in log[-1] and log[0]["kl"] == pytest.approx(0, abs=1e-6)  # starts at its reference
    assert settings["grpo"]["num_generations"] == 8 and settings["rl"]["rewards"] == ["hit", "rank_aware"]
    card = (out / "README.md").read_text()
    assert "hit x 1, rank_aware x 1" in card and "G 8, beta 0.001" in card
    assert not (out / "ref").exists()  # TRL's reference adapter is not part of the checkpoint
    # the saved folder ranks exactly as the trained model did
    from llmrec.hub.load import load_for_inference

    rows = policy.eval_rows(4, seed=0)
    trained = model_rankings(captured["model"], policy.tokenizer, policy.trie, rows, 3, progress=False)
    loaded = model_rankings(load_for_inference(out), policy.tokenizer, policy.trie, rows, 3, progress=False)
    assert [r["ranked_items"] for r in loaded] == [r["ranked_items"] for r in trained]
    assert np.allclose([r["scores"] for r in loaded], [r["scores"] for r in trained], atol=1e-5)
    from llmrec.evaluation.rank import main as eval_main

    eval_main(["--checkpoint", str(out), "--data", str(sft.parent / "ds"), "--split", "test", "--ks", "3",
               "--output", str(tmp_path / "report")])
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["users_evaluated"] == 20


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--num_generations", "1", "--per_device_train_batch_size", "2"), "at least 2 generations per prompt"),
        (("--reward_weights", "0", "0"), "--reward_weights are all zero"),
        (("--rewards", "collaborative"), "needs a classic model folder"),
        (("--rewards", "clicks"), "unknown ['clicks']"),
        (("--num_generations", "32", "--per_device_train_batch_size", "32"), "a beam cannot hold 32 distinct items"),
    ],
)
def test_bad_options_exit_2_and_write_nothing(sft, tmp_path, extra, message):
    argv = grpo_argv(sft, tmp_path / "o", *extra)
    proc = subprocess.run([sys.executable, str(ROOT / "recipes" / "grpo.py"), *argv], capture_output=True, text=True)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-800:]
    assert not (tmp_path / "o").exists()


def test_a_checkpoint_without_an_item_index_or_a_reward_model_of_another_catalog_is_refused(sft, tmp_path):
    with pytest.raises(LlmrecError, match="no llmrec.json / item_index"):
        grpo_main(grpo_argv(tmp_path, tmp_path / "o"))
    from llmrec.collab.train import main as collab_main

    other = synthetic_dataset(tmp_path, n_users=10, n_items=30)
    collab_main(["--model", "ease", "--data", str(other.path), "--output", str(tmp_path / "ease")])
    with pytest.raises(LlmrecError, match="catalog"):
        grpo_main(grpo_argv(sft, tmp_path / "o", "--rewards", "hit", "collaborative", "--reward_weights", "1", "1",
                            "--reward_model", str(tmp_path / "ease")))
    assert not (tmp_path / "o").exists()


def test_two_cpu_ranks_complete(sft, tmp_path):
    """DDP on 2 gloo ranks: each rank rolls out whole groups of its own prompts; the run completes and saves."""
    config = ROOT / "recipes" / "accelerate" / "cpu-2ranks.yaml"
    out = tmp_path / "two"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
           str(ROOT / "recipes" / "grpo.py"), *grpo_argv(sft, out, "--per_device_train_batch_size", "4")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "llmrec.json").read_text())["result"]
    assert result["steps"] == 2 and result["invalid_items"] == 0
