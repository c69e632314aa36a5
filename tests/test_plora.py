"""Personalized LoRA (llmrec.plora): iLoRA and RecLoRA layers, the user gate, folders, a Trainer step.
The recipe (training, resume, eval rank, 2 ranks) is tested in test_plora_recipe.py."""

import json
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

from conftest import tiny_model
from llmrec.collab import CollabConfig, load_collab, train_collab
from llmrec.errors import LlmrecError
from llmrec.plora import (IdUsers, PersonalLinear, PLoRASettings, SasrecUsers, gate_weights, history_positions,
                          load_plora, personalize, save_plora)
from test_collab import planted_dataset, small_sasrec

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA = LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS)
SHAPES = ["ilora", "reclora"]


@pytest.fixture(scope="module")
def sasrec_folder(tmp_path_factory) -> Path:
    """A tiny SASRec (dim 16) trained 2 epochs on the planted walk dataset of test_collab (catalog m0..m11)."""
    root = tmp_path_factory.mktemp("plora-sasrec")
    data = planted_dataset(root / "walk")
    train_collab(CollabConfig(data=str(data.path), output=str(root / "sasrec"), epochs=2, patience=2,
                              **small_sasrec()))
    return root / "sasrec"


@pytest.fixture(scope="module")
def catalog(sasrec_folder) -> list[str]:
    return [f"m{i}" for i in range(12)]  # the planted dataset's item order


def randomize_b(model, seed: int = 1, std: float = 0.2) -> None:
    """LoRA's B starts at zero (no update, no gradient into A or the router); a trained adapter's is not."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * std)


def prompt_ids(tokenizer, n: int) -> torch.Tensor:
    ids = tokenizer(["User history: Film 3, Film 4. Next:"] * n, return_tensors="pt").input_ids
    return ids


def sasrec_model(tokenizer, folder, shape: str, n_experts: int = 3, **settings):
    users = SasrecUsers(load_collab(folder), folder)
    r = 6 if shape == "ilora" else 2  # iLoRA: 3 experts of rank 2; RecLoRA: 3 meta-LoRAs of rank 2
    lora = LoraConfig(r=r, lora_alpha=8, target_modules=TARGETS)
    model = personalize(tiny_model(len(tokenizer)), lora, PLoRASettings(n_experts=n_experts, shape=shape,
                                                                        **settings), users)
    randomize_b(model)
    return model


def test_gate_is_a_tempered_softmax_with_renormalised_top_k():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    torch.testing.assert_close(gate_weights(logits, 2.0), torch.softmax(logits / 2.0, -1))
    top2 = gate_weights(logits, 1.0, top_k=2)
    torch.testing.assert_close(top2, torch.cat([torch.softmax(logits[:, :2], -1), torch.zeros(1, 2)], -1))
    assert top2.sum().item() == pytest.approx(1.0)


@pytest.mark.parametrize("shape", SHAPES)
def test_one_expert_with_a_constant_gate_is_plain_peft_lora(smollm2_tokenizer, shape):
    """K = 1 (gate exactly 1 for known and cold users alike): the same A/B weights give bit-identical logits."""
    vocab = len(smollm2_tokenizer)
    plain = get_peft_model(tiny_model(vocab), LORA)
    randomize_b(plain)
    personal = personalize(tiny_model(vocab), LORA, PLoRASettings(n_experts=1, shape=shape), IdUsers(["u0"], 8))
    assert sum(isinstance(m, PersonalLinear) for m in personal.modules()) == 2 * len(TARGETS)
    result = set_peft_model_state_dict(personal, get_peft_model_state_dict(plain))
    assert not result.unexpected_keys
    ids = prompt_ids(smollm2_tokenizer, 2)
    with torch.no_grad():
        want = plain(input_ids=ids).logits
        got = personal(input_ids=ids, user_input=torch.tensor([0, -1])).logits
    assert torch.equal(got, want)
    with plain.disable_adapter(), torch.no_grad():
        base = plain(input_ids=ids).logits
    assert not torch.allclose(base, want)  # the adapter does change the output: the equality is not vacuous


@pytest.mark.parametrize("shape", SHAPES)
def test_a_uniform_gate_over_k_experts_is_plain_lora_with_the_experts_folded_in(smollm2_tokenizer, shape):
    """The formulas with K = 3 and the cold-start gate 1/3: iLoRA gives s * B diag(1/3) A x, i.e. plain LoRA with
    B / 3 (scaling alpha / r over the total rank); RecLoRA with three copies of A gives A_p = A, i.e. plain
    LoRA with A and the shared B (scaling alpha / r over each meta-LoRA's rank)."""
    vocab, r = len(smollm2_tokenizer), 6 if shape == "ilora" else 2
    lora = LoraConfig(r=r, lora_alpha=8, target_modules=TARGETS)
    plain = get_peft_model(tiny_model(vocab), lora)
    randomize_b(plain)
    state = get_peft_model_state_dict(plain)
    folded = {k: (v.repeat(3, 1) if shape == "reclora" and "lora_A" in k else
                  v * 3 if shape == "ilora" and "lora_B" in k else v) for k, v in state.items()}
    personal = personalize(tiny_model(vocab), lora, PLoRASettings(n_experts=3, shape=shape), IdUsers(["u0"], 8))
    assert not set_peft_model_state_dict(personal, folded).unexpected_keys
    ids = prompt_ids(smollm2_tokenizer, 2)
    with torch.no_grad():
        torch.testing.assert_close(personal(input_ids=ids, user_input=torch.tensor([-1, -1])).logits,
                                   plain(input_ids=ids).logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_users_in_one_batch_get_their_own_outputs(smollm2_tokenizer, sasrec_folder, catalog, shape):
    model = sasrec_model(smollm2_tokenizer, sasrec_folder, shape).eval()
    histories = history_positions([["m1", "m2", "m3"], ["m7", "m8"], ["m4", "m10", "m0", "m5"]], catalog)
    ids = prompt_ids(smollm2_tokenizer, 3)  # the same prompt three times: only the user differs
    with torch.no_grad():
        batched = model(input_ids=ids, user_input=histories).logits
        alone = [model(input_ids=ids[:1], user_input=histories[i : i + 1]).logits[0] for i in range(3)]
    for i in range(3):
        torch.testing.assert_close(batched[i], alone[i], rtol=1e-5, atol=1e-5)
        for j in range(i):
            assert (batched[i] - batched[j]).abs().max() > 1e-3


@pytest.mark.parametrize("shape", SHAPES)
def test_gradients_reach_the_router_and_every_expert_with_and_without_checkpointing(smollm2_tokenizer,
                                                                                    sasrec_folder, catalog, shape):
    histories = history_positions([["m1", "m2"], ["m6", "m7", "m8"]], catalog)
    ids = prompt_ids(smollm2_tokenizer, 2)
    grads = []
    for checkpointing in (False, True):
        model = sasrec_model(smollm2_tokenizer, sasrec_folder, shape, router_hidden=8).train()
        if checkpointing:
            model.gradient_checkpointing_enable()  # transformers' default: non-reentrant
        model(input_ids=ids, labels=ids, user_input=histories).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        assert not any(p.grad is not None for p in model.personalizer.users.encoder.parameters())  # frozen
    plain, checkpointed = grads
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-4, atol=1e-6)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    with pytest.raises(LlmrecError, match="non-reentrant"):  # it would fail in backward, on the shared gate
        model(input_ids=ids, labels=ids, user_input=histories)
    router = [g for n, g in plain.items() if "personalizer.router" in n]
    assert len(router) == 4 and all(g.abs().sum() > 0 for g in router)
    experts = [(n, g) for n, g in plain.items() if "lora_A" in n]
    assert len(experts) == 2 * len(TARGETS)
    for name, g in experts:  # A: (K r_k, in); every expert's rows get a gradient
        assert all(rows.abs().sum() > 0 for rows in g.chunk(3, dim=0)), name
    for name, g in plain.items():
        if shape == "ilora" and "lora_B" in name:  # iLoRA's B: each expert's columns
            assert all(cols.abs().sum() > 0 for cols in g.chunk(3, dim=1)), name


def test_cold_start_users_get_the_uniform_gate(smollm2_tokenizer, sasrec_folder, catalog):
    model = sasrec_model(smollm2_tokenizer, sasrec_folder, "ilora").eval()
    # Unknown items only, and no history at all: neither user is known to the encoder.
    histories = history_positions([["m3", "m4"], ["not-an-item"], []], catalog)
    gate = model.personalizer(histories)
    torch.testing.assert_close(gate[1:], torch.full((2, 3), 1 / 3))
    assert not torch.allclose(gate[0], torch.full((3,), 1 / 3))
    ids = prompt_ids(smollm2_tokenizer, 3)
    with torch.no_grad():
        logits = model(input_ids=ids, user_input=histories).logits
    torch.testing.assert_close(logits[1], logits[2], rtol=1e-6, atol=1e-6)  # equal up to row-wise GEMM rounding
    assert (logits[0] - logits[1]).abs().max() > 1e-3
    users = IdUsers(["u1", "u2"], 4)
    id_model = personalize(tiny_model(len(smollm2_tokenizer)), LORA, PLoRASettings(n_experts=2), users)
    gate = id_model.personalizer(users.rows(["u2", "stranger"]))
    assert gate[1].tolist() == [0.5, 0.5] and gate[0].tolist() != [0.5, 0.5]


def test_a_forward_without_users_fails_instead_of_reusing_a_gate(smollm2_tokenizer):
    model = personalize(tiny_model(len(smollm2_tokenizer)), LORA, PLoRASettings(n_experts=2), IdUsers(["a"], 4))
    ids = prompt_ids(smollm2_tokenizer, 1)
    model(input_ids=ids, user_input=torch.tensor([0]))
    with pytest.raises(LlmrecError, match="no user gate"):
        model(input_ids=ids)
    with model.personalizer.gate_for(torch.tensor([0])), torch.no_grad():
        model(input_ids=ids)  # inside gate_for, forwards without user_input use its gate


@pytest.mark.parametrize("shape,repr_kind", [("ilora", "sasrec"), ("reclora", "id")])
def test_save_then_load_gives_identical_outputs(smollm2_tokenizer, sasrec_folder, catalog, tmp_path, shape,
                                                repr_kind):
    vocab = len(smollm2_tokenizer)
    if repr_kind == "sasrec":
        model = sasrec_model(smollm2_tokenizer, sasrec_folder, shape, temperature=0.5, top_k=2, router_hidden=8)
        user_input = history_positions([["m1", "m2"], ["m9"], []], catalog)
    else:
        users = IdUsers(["a", "b"], 8)
        model = personalize(tiny_model(vocab), LORA, PLoRASettings(n_experts=3, shape=shape), users)
        randomize_b(model)
        user_input = users.rows(["b", "a", "new"])
    model.eval()
    ids = prompt_ids(smollm2_tokenizer, 3)
    with torch.no_grad():
        want = model(input_ids=ids, user_input=user_input).logits
    save_plora(model, tmp_path / "adapter")
    assert {p.suffix for p in (tmp_path / "adapter").iterdir()} <= {".json", ".safetensors", ".md"}  # no pickle
    loaded = load_plora(tiny_model(vocab), tmp_path / "adapter")
    with torch.no_grad():
        got = loaded(input_ids=ids, user_input=user_input).logits
    assert torch.equal(got, want)
    assert not any(p.requires_grad for p in loaded.parameters())


def test_load_refuses_mismatched_experts_and_dimensions(smollm2_tokenizer, sasrec_folder, tmp_path):
    vocab = len(smollm2_tokenizer)
    model = sasrec_model(smollm2_tokenizer, sasrec_folder, "reclora")
    folder = save_plora(model, tmp_path / "adapter")
    info = json.loads((folder / "plora.json").read_text())

    def load_with(**changes):
        (folder / "plora.json").write_text(json.dumps({**info, **changes}))
        return load_plora(tiny_model(vocab), folder)

    with pytest.raises(LlmrecError, match=r"plora\.safetensors: tensor router\.net\.weight .*'n_experts' = 4"):
        load_with(n_experts=4)
    with pytest.raises(LlmrecError, match=r"sasrec/config\.json: field 'dim' is 16, .*repr_dim 32"):
        load_with(repr_dim=32)
    with pytest.raises(LlmrecError, match=r"plora\.json: field 'shape'"):
        load_with(shape="moe")
    with pytest.raises(LlmrecError, match=r"plora\.json: field 'top_k'"):
        load_with(top_k=5)
    # The router agrees but the layers do not: RecLoRA's bank holds K r rows of A.
    router = {k: v for k, v in model.personalizer.state_dict().items() if k.startswith("router.")}
    from safetensors.torch import save_file

    k4 = personalize(tiny_model(vocab), LoraConfig(r=2, lora_alpha=8, target_modules=TARGETS),
                     PLoRASettings(n_experts=4, shape="reclora"), model.personalizer.users)
    save_file({k: v.contiguous() for k, v in k4.personalizer.state_dict().items() if k in router},
              folder / "plora.safetensors")
    with pytest.raises(LlmrecError, match=r"adapter_model\.safetensors: tensor .*lora_A.* has shape \(6, 32\), "
                                          r"but .*'n_experts' = 4"):
        load_with(n_experts=4)
    with pytest.raises(LlmrecError, match="not a multiple of n_experts"):
        personalize(tiny_model(vocab), LORA, PLoRASettings(n_experts=3), IdUsers(["a"], 4))
    with pytest.raises(LlmrecError, match="does not combine with the LoRA variant"):  # DoRA would ignore the gate
        personalize(tiny_model(vocab), LoraConfig(r=4, use_dora=True, target_modules=TARGETS), PLoRASettings(2),
                    IdUsers(["a"], 4))


def test_one_trainer_step_moves_the_router_and_not_the_encoder(smollm2_tokenizer, sasrec_folder, catalog, tmp_path):
    from transformers import Trainer, TrainingArguments

    model = sasrec_model(smollm2_tokenizer, sasrec_folder, "ilora")
    ids = prompt_ids(smollm2_tokenizer, 4)
    histories = history_positions([["m1", "m2"], ["m5"], ["m8", "m9", "m10"], []], catalog)
    rows = [{"input_ids": ids[i], "labels": ids[i], "user_input": histories[i]} for i in range(4)]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=4,
                             learning_rate=1e-2, remove_unused_columns=False, report_to=[], save_strategy="no",
                             gradient_checkpointing=True, use_cpu=True, logging_steps=1)
    collate = lambda batch: {k: torch.stack([b[k] for b in batch]) for k in batch[0]}  # noqa: E731
    Trainer(model=model, args=args, train_dataset=rows, data_collator=collate).train()
    after = dict(model.named_parameters())
    moved = {n for n in before if not torch.equal(before[n], after[n])}
    assert {n for n in before if "personalizer.router" in n} <= moved
    assert any("lora_A" in n for n in moved)
    assert not any("encoder" in n or ("lora_" not in n and "router" not in n) for n in moved)


def test_beam_search_generation_inside_gate_for_matches_each_user_alone(smollm2_tokenizer):
    """transformers' generate expands each prompt into beams; each beam reads its own user's gate."""
    users = IdUsers(["a", "b"], 8)
    model = personalize(tiny_model(len(smollm2_tokenizer), initializer_range=0.5), LORA, PLoRASettings(n_experts=2),
                        users).eval()
    randomize_b(model, std=2.0)
    ids, who = prompt_ids(smollm2_tokenizer, 2), users.rows(["a", "b"])

    def generate(rows: slice) -> torch.Tensor:
        with model.personalizer.gate_for(who[rows]), torch.no_grad():
            return model.generate(input_ids=ids[rows], attention_mask=torch.ones_like(ids[rows]), max_new_tokens=4,
                                  num_beams=3, do_sample=False, pad_token_id=2)

    together = generate(slice(0, 2))
    assert together[0].tolist() == generate(slice(0, 1))[0].tolist()
    assert together[1].tolist() == generate(slice(1, 2))[0].tolist()
    assert together[0].tolist() != together[1].tolist()
