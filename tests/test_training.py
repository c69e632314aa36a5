"""SFT recipe on tiny from-config models: LoRA, QLoRA, full and scratch; resume; errors; 2 CPU ranks."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from trl import ModelConfig, TrlParser

from llmrec.errors import LlmrecError
from llmrec.indexing.build import IndexBuildConfig, build_index
from llmrec.prompts.build import PromptBuildConfig
from llmrec.training.config import RecArguments, RecSFTConfig
from llmrec.indexing.item_index import ItemIndex
from llmrec.training.model import train_embedding_rows
from llmrec.training.sft import train_sft

from conftest import synthetic_dataset, tiny_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, smollm2_tokenizer):
    """A synthetic dataset, a 2 x 8 semantic index for it, and a tiny Llama saved with SmolLM2's tokenizer."""
    root = tmp_path_factory.mktemp("sft")
    ds = synthetic_dataset(root, n_users=20, n_items=24)
    build_index(IndexBuildConfig(data="", output="", method="rqkmeans", levels=2, codebook_size=8), ds).save(
        root / "index"
    )
    tiny_model(len(smollm2_tokenizer)).save_pretrained(root / "tiny")
    smollm2_tokenizer.save_pretrained(root / "tiny")
    return root


LORA = ("--use_peft", "--lora_r", "4")


def argv(root: Path, out: Path, *extra: str) -> list[str]:
    """Flags of a 3-step tiny run. fp32 (--bf16 false): pinned losses and the rank-count comparisons must not
    depend on whether this CPU has native bf16."""
    return ["--data", str(root / "ds"), "--index", str(root / "index"), "--model_name_or_path", str(root / "tiny"),
            "--output_dir", str(out), "--max_steps", "3", "--per_device_train_batch_size", "4", "--learning_rate",
            "1e-2", "--logging_steps", "1", "--save_strategy", "no", "--report_to", "none",
            "--gradient_checkpointing", "false", "--ranking_eval_users", "4", "--ranking_k", "3", "--max_history",
            "3", "--dtype", "float32", "--bf16", "false", *extra]


def parse(args: list[str]):
    return TrlParser((PromptBuildConfig, RecArguments, RecSFTConfig, ModelConfig)).parse_args_and_config(args)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    name = "adapter_model.safetensors" if (folder / "adapter_model.safetensors").exists() else "model.safetensors"
    return load_file(folder / name)


def test_lora_trains_adapters_and_item_tokens_only(setup, tmp_path):
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoTokenizer

    result = train_sft(
        *parse(
            argv(
                setup,
                tmp_path / "out",
                "--use_peft",
                "--lora_r",
                "4",
                "--lora_target_modules",
                "q_proj",
                "v_proj",
                "--ranking_eval_steps",
                "2",
            )
        )
    )
    out = tmp_path / "out"
    assert [s for s, _ in result["loss_history"]] == [1, 2, 3]
    assert [e["step"] for e in result["ranking_evals"]] == [0, 2]  # untrained reference, then every 2 steps
    assert {"README.md", "llmrec.json", "item_index", "adapter_config.json"} <= {p.name for p in out.iterdir()}
    card = (out / "README.md").read_text()
    assert "LoRA (r=4" in card and "3 steps" in card and "Before training (same users): ndcg@3" in card
    assert f"(fp32, {result['threads']} CPU threads per process)" in card  # --bf16 false
    saved = weights(out)
    lora_b = [v for k, v in saved.items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)  # B starts at zero: non-zero means trained
    tok = AutoTokenizer.from_pretrained(out)
    new_ids = tok.convert_tokens_to_ids(ItemIndex.load(out / "item_index").new_tokens)
    assert len(new_ids) == 16 and len(tok) == new_ids[-1] + 1  # the index's tokens, saved with the tokenizer
    embedding = next(v for k, v in saved.items() if "embed_tokens" in k)  # saved beside the adapter
    base = load_file(setup / "tiny" / "model.safetensors")["model.embed_tokens.weight"]
    assert embedding.shape[0] == len(tok)
    torch.testing.assert_close(embedding[: base.shape[0]], base)  # ordinary rows untouched
    model = AutoPeftModelForCausalLM.from_pretrained(out)
    again = AutoPeftModelForCausalLM.from_pretrained(out)
    x = torch.tensor([[1, 2, 3] + new_ids[:2]])
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=x).logits, again(input_ids=x).logits)  # save/load identical
        torch.testing.assert_close(model.get_input_embeddings()(torch.tensor(new_ids)), embedding[new_ids])


def test_only_new_token_rows_train_under_lora(smollm2_tokenizer):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_model(100), LoraConfig(r=2, target_modules=["q_proj"]))
    train_embedding_rows(model, [97, 98, 99])
    before = model.get_input_embeddings().weight.detach().clone()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    model(input_ids=torch.tensor([[1, 97, 5, 98, 99]]), labels=torch.tensor([[1, 97, 5, 98, 99]])).loss.backward()
    opt.step()
    after = model.get_input_embeddings().weight.detach()
    changed = (after != before).any(dim=1).nonzero().flatten().tolist()
    assert changed == [97, 98, 99]
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # still tied


def test_full_fine_tuning_changes_every_weight_matrix(setup, tmp_path):
    train_sft(*parse(argv(setup, tmp_path / "out", "--final_eval", "false", "--ranking_eval_at_start", "false")))
    before, after = load_file(setup / "tiny" / "model.safetensors"), weights(tmp_path / "out")
    changed = [
        k for k in before if k in after and before[k].shape == after[k].shape and not torch.equal(before[k], after[k])
    ]
    matrices = [k for k in before if before[k].dim() == 2 and "embed" not in k]
    assert set(matrices) <= set(changed)
    assert after["model.embed_tokens.weight"].shape[0] == before["model.embed_tokens.weight"].shape[0] + 16


def test_qlora_trains_adapters_on_a_4bit_base(setup, tmp_path, monkeypatch):
    bnb = pytest.importorskip("bitsandbytes")
    from llmrec.training import sft

    loaded = {}
    load = sft.load_for_training

    def load_and_look(*args):
        model, tokenizer, peft_config = load(*args)
        layers = [m for name, m in model.named_modules() if ".layers." in name and isinstance(m, torch.nn.Linear)]
        loaded["linear"] = [type(m) for m in layers]  # before PEFT wraps them
        return model, tokenizer, peft_config

    monkeypatch.setattr(sft, "load_for_training", load_and_look)
    result = train_sft(
        *parse(
            argv(
                setup,
                tmp_path / "out",
                "--use_peft",
                "--load_in_4bit",
                "--lora_r",
                "4",
                "--lora_target_modules",
                "q_proj",
                "v_proj",
                "--final_eval",
                "false",
                "--ranking_eval_at_start",
                "false",
            )
        )
    )
    assert len(loaded["linear"]) == 2 * 7  # q, k, v, o, gate, up, down in each of the 2 layers: all 4-bit
    assert all(issubclass(t, bnb.nn.Linear4bit) for t in loaded["linear"])
    assert len(result["loss_history"]) == 3
    assert all(v.abs().sum() > 0 for k, v in weights(tmp_path / "out").items() if "lora_B" in k)
    assert "QLoRA" in (tmp_path / "out" / "README.md").read_text()


SCRATCH = ["--model_init", "scratch", "--scratch_hidden_size", "16", "--scratch_layers", "1", "--scratch_heads", "2",
           "--families", "item_sequence", "--item_format", "id"]


def test_scratch_model_holds_only_the_item_tokens_and_specials(setup, tmp_path):
    """TIGER-style: the vocabulary, embedding and output rows are exactly SPECIALS + the index's tokens; the
    prompt is the history's item tokens, then <sep>; the answer the target's tokens, then <eos>."""
    from transformers import AutoTokenizer

    from llmrec.training.scratch import SPECIALS

    result = train_sft(*parse(argv(setup, tmp_path / "out", *SCRATCH, "--ranking_eval_at_start", "false",
                                   "--max_steps", "12")))
    out, index = tmp_path / "out", ItemIndex.load(setup / "index")
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert set(tokenizer.get_vocab()) == {*SPECIALS, *index.new_tokens} and len(tokenizer) == 4 + 16
    model = weights(out)
    assert model["model.embed_tokens.weight"].shape == (len(tokenizer), 16)  # tied output layer: same rows
    config = json.loads((out / "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]) == (16, 1, 20)
    first, second = index.tokens[0], index.tokens[1]
    chat = [{"role": "system", "content": "."}, {"role": "user", "content": first + second},
            {"role": "assistant", "content": first}]
    text = tokenizer.apply_chat_template(chat, tokenize=False)
    assert text == f"{first}{second}<sep>{first}<eos>"
    assert tokenizer.unk_token_id not in tokenizer(text)["input_ids"]
    losses = [loss for _, loss in result["loss_history"]]
    assert sum(losses[-3:]) < sum(losses[:3]) - 0.3  # from ln 20 = 3.0 per token: <eos> after 2 tokens is learned
    assert "ndcg@3" in result["valid_metrics"]


def test_scratch_refuses_prompts_outside_its_vocabulary(setup, tmp_path):
    with pytest.raises(LlmrecError, match="outside the scratch vocabulary.*item_sequence"):
        train_sft(*parse(argv(setup, tmp_path / "out", *SCRATCH[:-4])))  # the default family: English words
    title = tmp_path / "title"
    with pytest.raises(LlmrecError, match="semantic-ID index"):
        train_sft(*parse([a for a in argv(setup, title, *SCRATCH) if a not in ("--index", str(setup / "index"))]))
    assert not (tmp_path / "out").exists() and not title.exists()


# Logged losses of 3 seeded steps in float32, measured once (CPU). A change to the loss, the completion-only
# masking, the rendered rows or their order moves them far beyond the tolerance: counting the prompt tokens
# too moves the first loss by 0.02 (torchtune pins its recipes' losses the same way).
PINNED_LOSSES = {
    "lora": ([*LORA, "--lora_target_modules", "q_proj", "v_proj"], [10.84172, 10.70347, 10.66195]),
    "full": ([], [10.84172, 10.55697, 10.22428]),
    "scratch": (SCRATCH, [2.98828, 2.93702, 2.99691]),
}


@pytest.mark.parametrize("tuning", PINNED_LOSSES)
def test_seeded_losses_match_pinned_values(setup, tmp_path, tuning):
    extra, pinned = PINNED_LOSSES[tuning]
    result = train_sft(
        *parse(
            argv(
                setup,
                tmp_path / "out",
                *extra,
                "--final_eval",
                "false",
                "--ranking_eval_at_start",
                "false",
            )
        )
    )
    assert [loss for _, loss in result["loss_history"]] == pytest.approx(pinned, abs=1e-4)


def test_resume_ends_with_the_same_weights_as_an_uninterrupted_run(setup, tmp_path, monkeypatch):
    from transformers import TrainerCallback

    from llmrec.training import sft

    common = [
        "--max_steps",
        "4",
        "--save_strategy",
        "steps",
        "--save_steps",
        "2",
        "--final_eval",
        "false",
        "--ranking_eval_at_start",
        "false",
        "--use_peft",
        "--lora_r",
        "4",
    ]
    train_sft(*parse(argv(setup, tmp_path / "full", *common)))

    class CrashAfterStep2(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 2:
                raise KeyboardInterrupt  # the process dies right after checkpoint-2 is written

    train = sft.SFTTrainer.train
    monkeypatch.setattr(
        sft.SFTTrainer, "train", lambda self, **kw: (self.add_callback(CrashAfterStep2()), train(self, **kw))[1]
    )
    with pytest.raises(KeyboardInterrupt):
        train_sft(*parse(argv(setup, tmp_path / "cut", *common)))
    monkeypatch.setattr(sft.SFTTrainer, "train", train)
    assert sorted(p.name for p in (tmp_path / "cut").glob("checkpoint-*")) == ["checkpoint-2"]
    result = train_sft(*parse(argv(setup, tmp_path / "cut", *common)))  # the same command, run again
    assert result["resumed_from"] == str(tmp_path / "cut" / "checkpoint-2")
    assert [s for s, _ in result["loss_history"]] == [1, 2, 3, 4]  # steps 1-2 restored from the checkpoint
    full, resumed = weights(tmp_path / "full"), weights(tmp_path / "cut")
    assert full.keys() == resumed.keys()
    for k in full:
        torch.testing.assert_close(resumed[k], full[k])


def test_unwritable_output_dir_fails_before_loading_anything(setup, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a folder cannot be created inside a file, even by root
    with pytest.raises(LlmrecError, match="output_dir is not writable"):
        train_sft(*parse(argv(setup, blocker / "out")))


def test_wrong_index_and_empty_training_data_fail_fast(setup, tmp_path, toy_dataset):
    other = ["--data", str(toy_dataset.path)]
    with pytest.raises(LlmrecError, match="built for another catalog"):
        train_sft(*parse(argv(setup, tmp_path / "a") + other))
    no_index = [a for a in argv(setup, tmp_path / "b") if a not in ("--index", str(setup / "index"))]
    with pytest.raises(LlmrecError, match="no training rows"):
        train_sft(*parse(no_index + other + ["--min_history", "10"]))


def test_unknown_config_key_is_named(setup, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"data: {setup / 'ds'}\noutput_dir: {tmp_path / 'o'}\nlerning_rate: 0.1\n")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / "sft.py"), "--config", str(config)], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "lerning_rate" in proc.stderr and "Traceback" not in proc.stderr


def launch(config: Path, dump: Path, *args: str) -> list[dict]:
    """Run tests/ddp_worker.py on 2 ranks with `accelerate launch --config_file config`; -> what each rank wrote."""
    worker = ROOT / "tests" / "ddp_worker.py"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), str(worker), *args]
    env = {**os.environ, "LLMREC_DDP_DUMP": str(dump), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((dump / f"rank{r}.json").read_text()) for r in (0, 1)]


# Rank all 20 validation users one at a time (no padding) before training, after step 1 and at the end.
RANK_ALL = "--max_steps 2 --ranking_eval_steps 1 --ranking_eval_users 20 --ranking_batch_size 1".split()


@pytest.fixture(scope="module")
def two_ranks(setup, tmp_path_factory):
    """One LoRA run on 2 CPU ranks (gloo), 4 rows per rank and step, ranking as in RANK_ALL; -> (output
    folder, what each rank wrote). No LoRA dropout: its masks depend on how rows are split between ranks."""
    tmp = tmp_path_factory.mktemp("ranks")
    config = ROOT / "recipes" / "accelerate" / "cpu-2ranks.yaml"
    ranks = launch(config, tmp, *argv(setup, tmp / "out", *LORA, "--lora_dropout", "0", *RANK_ALL))
    assert [r["world_size"] for r in ranks] == [2, 2]  # as the trainer sees it: one process group of two
    return tmp / "out", ranks


def assert_ranked_like_one_process(out: Path, ranks: list[dict], data: Path) -> None:
    """Both ranks logged and hold the same ranking results, and they are what one process gets from the
    saved model for the same users (each rank ranked half of them)."""
    from llmrec.data import PreparedDataset
    from llmrec.evaluation.rank import RankEvalConfig, evaluate
    from llmrec.generation.ranking import checkpoint_rankings

    rank0, rank1 = ranks
    assert [e["step"] for e in rank0["ranking_evals"]] == [0, 1] and rank0["ranking_evals"] == rank1["ranking_evals"]
    assert rank0["valid_metrics"] == rank1["valid_metrics"] and rank0["records"] == rank1["records"]
    assert len(rank0["records"]) == 20
    dataset = PreparedDataset.load(data)  # the training run's evaluation settings, in one process:
    config = RankEvalConfig(str(data), "", checkpoint=str(out), split="valid", ks=[3], batch_size=1, n_bootstrap=200)
    records = checkpoint_rankings(config, dataset)
    assert len({round(r["scores"][0], 4) for r in records}) > 10  # scores tell the users apart
    for alone in records:
        sharded = rank0["records"][alone["user_id"]]
        assert sharded["ranked_items"] == alone["ranked_items"]
        assert sharded["scores"] == pytest.approx(alone["scores"], abs=1e-4)
    alone = evaluate(dataset, records, config)
    assert any(alone.per_user["recall@3"])  # some hits, so the metrics compared are not all zero
    for name in ("ndcg@3", "recall@3", "mrr@3"):
        assert alone.metrics[name]["value"] == pytest.approx(rank0["valid_metrics"][name]["value"])
        assert alone.metrics[name]["ci95"] == pytest.approx(rank0["valid_metrics"][name]["ci95"])


def test_two_ranks_rank_users_like_one_process(two_ranks, setup):
    out, ranks = two_ranks
    assert_ranked_like_one_process(out, ranks, setup / "ds")


def test_two_ranks_train_like_one_rank_with_the_same_global_batch(two_ranks, setup, tmp_path):
    out, (rank0, rank1) = two_ranks
    assert rank0["checksum"] == rank1["checksum"] and rank0["changed"] > 0  # both ranks hold the same weights
    alone = "--max_steps 2 --per_device_train_batch_size 8 --final_eval false --ranking_eval_at_start false"
    one = train_sft(*parse(argv(setup, tmp_path / "one", *LORA, "--lora_dropout", "0", *alone.split())))
    # The same 8 rows per step. Ranks that each train alone on all rows (no process group) log other losses.
    assert [s for s, _ in rank0["loss_history"]] == [s for s, _ in one["loss_history"]] == [1, 2]
    assert [x for _, x in rank0["loss_history"]] == pytest.approx([x for _, x in one["loss_history"]], abs=1e-5)
    two_weights, one_weights = weights(out), weights(tmp_path / "one")
    assert two_weights.keys() == one_weights.keys()
    for k in one_weights:
        torch.testing.assert_close(two_weights[k], one_weights[k], rtol=1e-4, atol=1e-5)


def test_ranking_under_fsdp_sharding_runs_in_lockstep_and_matches_one_process(tmp_path):
    worker = ROOT / "tests" / "fsdp_ranking_worker.py"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(worker)]
    env = {**os.environ, "LLMREC_DDP_DUMP": str(tmp_path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)  # a hang fails, not blocks
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in (0, 1):
        dump = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert [r["user_id"] for r in dump["together"]] == ["u0", "u1", "u2", "u3", "u4"]  # all users, in order
        for sharded, alone in zip(dump["together"], dump["alone"]):
            assert sharded["ranked_items"] == alone["ranked_items"] and len(alone["ranked_items"]) == 3
            assert sharded["scores"] == pytest.approx(alone["scores"], abs=1e-4)


def test_fsdp_config_saves_full_weights():
    """Trainer.save_model writes model weights under FSDP only with FULL_STATE_DICT (SHARDED_STATE_DICT
    writes none, and `llmrec eval rank --checkpoint` would find no model). Read as accelerate reads it."""
    from accelerate import FullyShardedDataParallelPlugin
    from accelerate.commands.config.config_args import load_config_from_file

    fsdp = load_config_from_file(str(ROOT / "recipes" / "accelerate" / "fsdp.yaml")).fsdp_config
    plugin = FullyShardedDataParallelPlugin(
        fsdp_version=fsdp["fsdp_version"], state_dict_type=fsdp["fsdp_state_dict_type"]
    )
    assert "FULL_STATE_DICT" in str(plugin.state_dict_type)  # transformers' save_model then writes whole weights


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_fsdp_on_two_gpus_ranks_on_every_rank_and_saves_a_checkpoint_eval_rank_loads(setup, tmp_path):
    """accelerate ignores FSDP on CPU ranks (they come up as plain DDP), so this runs only with 2 GPUs."""
    shipped = (ROOT / "recipes" / "accelerate" / "fsdp.yaml").read_text()
    config = tmp_path / "fsdp.yaml"
    two = shipped.replace("num_processes: 8", "num_processes: 2").replace("bf16", '"no"')
    assert "num_processes: 2" in two and '"no"' in two, "fsdp.yaml changed: update this test's edits"
    config.write_text(two)
    ranks = launch(config, tmp_path, *argv(setup, tmp_path / "out", *RANK_ALL))  # full fine-tuning
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert_ranked_like_one_process(tmp_path / "out", ranks, setup / "ds")


@pytest.mark.parametrize("tuning", [["--use_peft", "--lora_r", "4"], SCRATCH], ids=["lora", "scratch"])
def test_eval_rank_scores_a_trained_checkpoint_end_to_end(setup, tmp_path, capsys, tuning):
    from llmrec.evaluation.rank import main as eval_main

    train_sft(
        *parse(
            argv(
                setup,
                tmp_path / "ckpt",
                *tuning,
                "--final_eval",
                "false",
                "--ranking_eval_at_start",
                "false",
            )
        )
    )
    eval_main(
        [
            "--checkpoint",
            str(tmp_path / "ckpt"),
            "--data",
            str(setup / "ds"),
            "--output",
            str(tmp_path / "report"),
            "--split",
            "test",
            "--ks",
            "1",
            "3",
            "--max_users",
            "5",
            "--n_bootstrap",
            "20",
        ]
    )
    assert "5 sampled users averaged" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["users_evaluated"] == 5 and metrics["hallucination_rate"] == 0.0  # constrained: real items
    lines = (tmp_path / "report" / "rankings.jsonl").read_text().splitlines()
    assert len(lines) == 5 and all(len(json.loads(x)["ranked_items"]) <= 3 for x in lines)
    assert {p.name for p in (tmp_path / "report").iterdir()} >= {"metrics.json", "report.md", "rankings.jsonl"}
