"""Device, precision and thread choices (llmrec.hardware)."""

import torch


def test_a_single_cpu_process_uses_every_core_and_ranks_keep_the_launchers_setting(monkeypatch):
    """`accelerate launch` sets one thread per process; one process alone should not run at half speed."""
    from llmrec import hardware

    before = torch.get_num_threads()
    monkeypatch.setattr(hardware.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    monkeypatch.setattr(hardware.torch.cuda, "is_available", lambda: False)
    try:
        torch.set_num_threads(1)
        monkeypatch.setenv("WORLD_SIZE", "2")
        assert hardware.use_every_core() == 1
        monkeypatch.setenv("WORLD_SIZE", "1")
        assert hardware.use_every_core() == 3
    finally:
        torch.set_num_threads(before)


def test_bf16_is_chosen_by_the_hardware_when_unset(monkeypatch):
    from llmrec import hardware

    monkeypatch.setattr(hardware.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: True)
    assert hardware.choose_bf16(None) == (True, True)  # bf16 on a CPU needs use_cpu in transformers
    assert hardware.choose_bf16(False) == (False, False)
    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: False)
    assert hardware.choose_bf16(None) == (False, False)


def test_sft_and_rerank_configs_take_bf16_from_the_hardware(monkeypatch, tmp_path):
    from llmrec import hardware
    from llmrec.rerank.train import RerankConfig
    from llmrec.training.config import RecSFTConfig

    monkeypatch.setattr(hardware.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: True)
    for config in (RecSFTConfig, RerankConfig):
        args = config(output_dir=str(tmp_path), report_to="none")
        assert args.bf16 and args.use_cpu
        assert not config(output_dir=str(tmp_path), report_to="none", bf16=False).bf16
