"""recipes/plora.py on a tiny model: training with users per row, checkpoints and resume, eval rank --checkpoint,
2 CPU ranks."""

import json
from pathlib import Path

import pytest
import torch

from conftest import synthetic_dataset, tiny_model
from llmrec.collab import CollabConfig, train_collab
from llmrec.errors import LlmrecError
from llmrec.indexing.item_index import ItemIndex
from llmrec.indexing.build import IndexBuildConfig, build_index
from llmrec.plora import load_plora
from test_collab import small_sasrec


@pytest.fixture(scope="module")
def recipe_setup(tmp_path_factory, smollm2_tokenizer) -> Path:
    """A synthetic dataset, a SASRec trained on it 2 epochs, a 2 x 8 semantic index, a tiny Llama saved with
    SmolLM2's tokenizer."""
    root = tmp_path_factory.mktemp("plora-recipe")
    ds = synthetic_dataset(root, n_users=20, n_items=24)
    train_collab(CollabConfig(data=str(ds.path), output=str(root / "sasrec"), epochs=2, patience=2,
                              **small_sasrec()))
    build_index(IndexBuildConfig(data="", output="", method="rqkmeans", levels=2, codebook_size=8), ds).save(
        root / "index")
    tiny_model(len(smollm2_tokenizer)).save_pretrained(root / "tiny")
    smollm2_tokenizer.save_pretrained(root / "tiny")
    return root


def recipe_argv(root: Path, out: Path, *extra: str) -> list[str]:
    return ["--data", str(root / "ds"), "--model_name_or_path", str(root / "tiny"), "--output_dir", str(out),
            "--use_peft", "--lora_r", "4", "--lora_target_modules", "q_proj", "v_proj", "down_proj",
            "--n_experts", "2", "--encoder", str(root / "sasrec"), "--max_steps", "2",
            "--per_device_train_batch_size", "4", "--learning_rate", "1e-2", "--logging_steps", "1",
            "--save_steps", "1", "--report_to", "none", "--max_history", "3", "--dtype", "float32", "--bf16",
            "false", "--final_eval", "false", *extra]


@pytest.mark.parametrize("shape,repr_kind", [("ilora", "sasrec"), ("reclora", "id")])
def test_recipe_trains_two_steps_and_saves_a_loadable_folder(recipe_setup, tmp_path, capsys, shape, repr_kind):
    from safetensors.torch import load_file

    from llmrec.plora.train import main

    out = tmp_path / "out"
    main(recipe_argv(recipe_setup, out, "--shape", shape, "--user_repr", repr_kind))
    assert "saved" in capsys.readouterr().out
    info = json.loads((out / "plora.json").read_text())
    assert (info["shape"], info["user_repr"], info["n_experts"]) == (shape, repr_kind, 2)
    first, second = (load_file(out / f"checkpoint-{n}" / "plora.safetensors") for n in (1, 2))
    # Step 1 moves B away from zero; from step 2 the router has a gradient, and the checkpoints hold it.
    assert any(not torch.equal(first[k], second[k]) for k in first if k.startswith("router."))
    assert all(torch.equal(load_file(out / "plora.safetensors")[k], second[k]) for k in second)
    from transformers import AutoModelForCausalLM

    from llmrec.hub.load import load_for_inference

    with pytest.raises(LlmrecError, match="personalized LoRA"):  # not silently a plain LoRA of summed experts
        load_for_inference(out)
    model = load_plora(AutoModelForCausalLM.from_pretrained(recipe_setup / "tiny"), out)
    user_input = torch.tensor([[0, 1, -1]]) if repr_kind == "sasrec" else torch.tensor([0])
    with torch.no_grad():
        model(input_ids=torch.tensor([[5, 6, 7]]), user_input=user_input)


def test_resumed_recipe_ends_with_the_uninterrupted_runs_gate_and_adapter(recipe_setup, tmp_path, monkeypatch):
    """Killed after checkpoint-2 (the router has moved by then: step 1 only moves B off zero), then run again."""
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    from llmrec.plora import train as plora_train

    three = ("--max_steps", "3")
    plora_train.main(recipe_argv(recipe_setup, tmp_path / "whole", *three))

    class CrashAfterStep2(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 2:
                raise KeyboardInterrupt

    train = plora_train.PLoRATrainer.train
    monkeypatch.setattr(plora_train.PLoRATrainer, "train",
                        lambda self, **kw: (self.add_callback(CrashAfterStep2()), train(self, **kw))[1])
    with pytest.raises(KeyboardInterrupt):
        plora_train.main(recipe_argv(recipe_setup, tmp_path / "cut", *three))
    monkeypatch.setattr(plora_train.PLoRATrainer, "train", train)
    plora_train.main(recipe_argv(recipe_setup, tmp_path / "cut", *three))  # the same command, run again
    assert json.loads((tmp_path / "cut" / "llmrec.json").read_text())["result"]["resumed_from"].endswith("-2")
    for name in ("plora.safetensors", "adapter_model.safetensors"):
        whole, cut = load_file(tmp_path / "whole" / name), load_file(tmp_path / "cut" / name)
        for key in whole:
            torch.testing.assert_close(cut[key], whole[key], msg=f"{name} {key}")


def test_eval_rank_scores_a_personalized_checkpoint_with_each_users_gate(recipe_setup, tmp_path, capsys):
    """`llmrec eval rank --checkpoint` on a recipe folder: each beam gets its own user's input, so users ranked
    in one batch get exactly what they get alone, and not what the cold-start gate gives."""
    from llmrec.data import PreparedDataset
    from llmrec.evaluation.rank import RankEvalConfig
    from llmrec.evaluation.rank import main as eval_main
    from llmrec.generation.ranking import checkpoint_rows, model_rankings
    from llmrec.indexing.item_index import ItemIndex
    from llmrec.plora.inference import load_for_ranking
    from llmrec.plora.train import main
    from transformers import AutoTokenizer

    out = tmp_path / "out"
    main(recipe_argv(recipe_setup, out, "--learning_rate", "5e-2", "--max_steps", "3"))
    eval_main(["--checkpoint", str(out), "--data", str(recipe_setup / "ds"), "--output", str(tmp_path / "report"),
               "--split", "test", "--ks", "3", "--max_users", "6", "--n_bootstrap", "20", "--batch_size", "6"])
    assert "6 sampled users averaged" in capsys.readouterr().out
    report = {r["user_id"]: r["ranked_items"] for r in map(json.loads, open(tmp_path / "report" / "rankings.jsonl"))}

    dataset = PreparedDataset.load(recipe_setup / "ds")
    config = RankEvalConfig(str(recipe_setup / "ds"), "", checkpoint=str(out), split="test", ks=[3], max_users=6)
    settings, tokenizer = json.loads((out / "llmrec.json").read_text()), AutoTokenizer.from_pretrained(out)
    trie = ItemIndex.load(out / "item_index").trie(tokenizer)
    rows = checkpoint_rows(settings, config, dataset, None, tokenizer)
    model, inputs = load_for_ranking(out, dataset, rows)
    assert (inputs["user_input"] >= 0).any(1).all()  # every test user has a history the encoder knows
    alone = model_rankings(model, tokenizer, trie, rows, 3, batch_size=1, progress=False, row_inputs=inputs)
    batched = model_rankings(model, tokenizer, trie, rows, 3, batch_size=6, progress=False, row_inputs=inputs)
    cold = model_rankings(model, tokenizer, trie, rows, 3, batch_size=6, progress=False,
                          row_inputs={"user_input": torch.full_like(inputs["user_input"], -1)})
    for a, b in zip(alone, batched):
        assert a["ranked_items"] == b["ranked_items"]
        kept = report[a["user_id"]]  # the report's list: the same order, the user's history items removed
        assert kept == [i for i in a["ranked_items"] if i in kept] and len(kept) >= 1
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-4)
    assert any(a["scores"] != pytest.approx(c["scores"], abs=1e-4) for a, c in zip(alone, cold))


def test_semantic_ids_train_their_rows_and_rank_with_each_users_gate_during_and_after_training(recipe_setup,
                                                                                               tmp_path, capsys):
    """Items as new tokens: their embedding rows train beside the experts (every other row stays the base's),
    the folder carries the resized embedding and loads onto the plain base model, and ranking evaluation runs
    during training and after it (a forward pass without users would fail: the callback passes them)."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmrec.evaluation.rank import main as eval_main
    from llmrec.plora.train import main

    out = tmp_path / "out"
    main(recipe_argv(recipe_setup, out, "--index", str(recipe_setup / "index"), "--train_new_tokens", "true",
                     "--max_steps", "3", "--ranking_eval_steps", "1", "--ranking_eval_users", "4",
                     "--ranking_k", "3", "--final_eval", "true"))
    result = json.loads((out / "llmrec.json").read_text())["result"]
    assert [e["step"] for e in result["ranking_evals"]] == [0, 1, 2]  # untrained, then each step but the last
    assert result["valid_users"] == 4 and 0 <= result["valid_metrics"]["ndcg@3"]["value"] <= 1

    base = AutoModelForCausalLM.from_pretrained(recipe_setup / "tiny").get_input_embeddings().weight.detach()
    tokenizer = AutoTokenizer.from_pretrained(out)
    new = tokenizer.convert_tokens_to_ids(ItemIndex.load(recipe_setup / "index").new_tokens)
    assert len(new) == len(tokenizer) - base.shape[0] > 0
    key = "base_model.model.model.embed_tokens.weight"
    step1, final = (load_file(folder / "adapter_model.safetensors")[key] for folder in (out / "checkpoint-1", out))
    assert final.shape == (len(tokenizer), base.shape[1])
    assert torch.equal(final[: base.shape[0]], base)  # the pretrained vocabulary never moves
    assert not torch.allclose(final[new], step1[new])  # the item tokens' rows do

    model = load_plora(AutoModelForCausalLM.from_pretrained(recipe_setup / "tiny"), out)
    assert torch.equal(model.get_input_embeddings().weight, final)
    eval_main(["--checkpoint", str(out), "--data", str(recipe_setup / "ds"), "--output", str(tmp_path / "report"),
               "--split", "test", "--ks", "3", "--max_users", "4", "--n_bootstrap", "20"])
    assert "4 sampled users averaged" in capsys.readouterr().out


def test_chat_backends_answer_each_user_with_their_gate(recipe_setup, tmp_path):
    """`llmrec eval zeroshot --backend hf` on a personalized folder: each answer is what greedy decoding gives
    inside that user's gate alone (batched with other users and a cold-start one), the cache keys answers by
    user, a call without users is refused, and so is the vLLM backend (it cannot mix experts per user)."""
    from transformers import AutoTokenizer

    from llmrec.data import PreparedDataset
    from llmrec.generation.backends import GenerationSettings, TransformersChat, UserContext, VLLMChat
    from llmrec.generation.cache import ResponseCache
    from llmrec.plora import save_plora
    from llmrec.plora.inference import load_personalized
    from llmrec.plora.train import main
    from llmrec.plora.users import user_inputs
    from test_plora import randomize_b
    from llmrec.zeroshot.run import ZeroShotConfig, run_zeroshot

    out = tmp_path / "out"
    main(recipe_argv(recipe_setup, out, "--max_steps", "1"))
    trained = load_personalized(out)  # 1 step barely moves it: make the experts differ so that gates matter
    randomize_b(trained, std=2.0)
    save_plora(trained, out)
    catalog = PreparedDataset.load(recipe_setup / "ds").items["item_id"].to_pylist()
    users = [UserContext("a", tuple(catalog[:3])), UserContext("b", tuple(catalog[9:12])), UserContext("new", ())]
    ask = [[{"role": "user", "content": "Recommend a movie."}]] * len(users)
    settings = GenerationSettings(max_tokens=8)
    backend, answers = TransformersChat(str(out), batch_size=3, catalog=catalog), {}
    backend.complete(ask, settings, lambda n, c: answers.__setitem__(n, c.text), users)

    model, tokenizer = load_personalized(out), AutoTokenizer.from_pretrained(out)
    text = tokenizer.apply_chat_template(ask[0], tokenize=False, add_generation_prompt=True)
    enc = tokenizer([text], return_tensors="pt", add_special_tokens=False)
    alone = []
    for user in users:
        columns = {"user_id": [user.user_id], "history_item_ids": [list(user.history_item_ids)]}
        with torch.no_grad(), model.personalizer.gate_for(user_inputs(model.personalizer.users, columns, catalog)):
            ids = model.generate(**enc, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        alone.append(tokenizer.decode(ids[0, enc["input_ids"].shape[1]:], skip_special_tokens=True))
    assert [answers[n] for n in range(len(users))] == alone
    assert len(set(alone)) > 1  # the gate changes the answer here, so the check above sees whose gate was used

    keys = {ResponseCache.key(backend, ask[0], settings, user) for user in users}
    assert len(keys) == len(users)  # one question, one cached answer per user
    with pytest.raises(LlmrecError, match="pass users"):
        backend.complete(ask[:1], settings, lambda n, c: None)
    with pytest.raises(LlmrecError, match="personalized LoRA"):
        VLLMChat(str(out))
    config = ZeroShotConfig(data=str(recipe_setup / "ds"), output=str(tmp_path / "report"),
                            cache=str(tmp_path / "cache"), backend="hf", model=str(out), k=3, ks=[3], n_users=4,
                            max_tokens=8, n_bootstrap=20, max_history=3)
    assert run_zeroshot(config, progress=False)["n_requests"] == 4
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 4


def test_recipe_refuses_packing_and_a_missing_encoder(recipe_setup, tmp_path):
    from llmrec.plora.train import main

    with pytest.raises(LlmrecError, match="packing: false"):
        main(recipe_argv(recipe_setup, tmp_path / "b", "--packing", "true"))
    with pytest.raises(LlmrecError, match="needs --encoder"):
        main([a for a in recipe_argv(recipe_setup, tmp_path / "c") if a not in ("--encoder",
                                                                              str(recipe_setup / "sasrec"))])


def test_two_cpu_ranks_end_with_identical_weights_equal_to_one_process(recipe_setup, tmp_path):
    """accelerate launch, 2 CPU ranks (gloo), 4 rows per rank and step, against one process with 8: every
    trainable weight (LoRA experts and router) is the same on both ranks and matches the one-process run.
    No LoRA dropout: its masks depend on how rows are split between ranks."""
    import os
    import subprocess
    import sys

    from llmrec.plora.train import ARG_TYPES, parse_args, train_plora

    root = Path(__file__).resolve().parents[1]
    steps = ("--max_steps", "3", "--lora_dropout", "0", "--save_strategy", "no")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(root / "recipes" / "accelerate" / "cpu-2ranks.yaml"), str(root / "tests" / "plora_ddp_worker.py"),
           *recipe_argv(recipe_setup, tmp_path / "two", *steps)]
    env = {**os.environ, "LLMREC_DDP_DUMP": str(tmp_path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["world_size"] == rank1["world_size"] == 2
    assert rank0["weights"] == rank1["weights"]  # identical, not just close
    assert any("personalizer.router" in n for n in rank0["weights"])
    one = train_plora(*parse_args(ARG_TYPES, recipe_argv(recipe_setup, tmp_path / "one", *steps,
                                                         "--per_device_train_batch_size", "8"), prog="test"))
    assert [x for _, x in rank0["loss_history"]] == pytest.approx([x for _, x in one["loss_history"]], abs=1e-5)
    from safetensors.torch import load_file

    for name in ("plora.safetensors", "adapter_model.safetensors"):
        two_w, one_w = load_file(tmp_path / "two" / name), load_file(tmp_path / "one" / name)
        assert two_w.keys() == one_w.keys()
        for key in one_w:
            torch.testing.assert_close(two_w[key], one_w[key], rtol=1e-4, atol=1e-5, msg=f"{name} {key}")
