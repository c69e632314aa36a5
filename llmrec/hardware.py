"""Which device and precision a run gets, decided in one place so training, scoring and generation agree."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch


def pick_device() -> torch.device:
    """The CUDA GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextmanager
def deterministic_torch() -> Iterator[None]:
    """torch's deterministic kernels inside (restored after): e.g. a codebook lookup's backward accumulates
    rows with threads racing on CPU, so the same seed gave another index on every build."""
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was)


def end_process_group() -> None:
    """Leave the torch.distributed group if this process joined one (`accelerate launch`). A rank that exits
    with its gloo group alive can abort in the group's teardown ("terminate called without an active
    exception", SIGABRT) after its work is saved, failing the whole launch."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 autocast pays."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def choose_bf16(bf16: bool | None) -> tuple[bool, bool]:
    """-> (bf16, use_cpu) for a Trainer: bf16 when asked, or when unset and the hardware has it (a CUDA GPU,
    or a CPU with native bf16). use_cpu is needed where transformers would otherwise find no device: bf16 on
    a machine without CUDA, and CPU ranks started by a launcher (accelerate's multi-process launcher does
    not pass its config's `use_cpu` on, so each rank would train alone on all the data)."""
    cuda = torch.cuda.is_available()
    if bf16 is None:
        bf16 = bool(cuda and torch.cuda.is_bf16_supported()) or (not cuda and cpu_has_bf16())
    return bf16, (bf16 and not cuda) or launched_ranks_without_accelerator()


class HardwareDefaults:
    """Mixin for a Trainer's arguments dataclass (`class RecSFTConfig(HardwareDefaults, SFTConfig)`): bf16 and
    use_cpu from `choose_bf16` before the arguments check themselves, so one config runs on CPU and GPU."""

    def __post_init__(self) -> None:
        self.bf16, use_cpu = choose_bf16(self.bf16)
        self.use_cpu = self.use_cpu or use_cpu
        super().__post_init__()  # type: ignore[misc]


def launched_ranks_without_accelerator() -> bool:
    """Whether a launcher started several ranks (WORLD_SIZE > 1) on a machine with no GPU or other accelerator."""
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6; older: CUDA is the only one we check
    present = accelerator.is_available() if accelerator is not None else torch.cuda.is_available()
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not present


def use_every_core() -> int:
    """A single CPU process gets every core it may run on; -> the thread count.

    `accelerate launch` sets OMP_NUM_THREADS=1 for every process it starts, which is right for several ranks
    sharing a machine and wrong for one process (half the speed on 2 cores, measured). Several ranks, or a
    GPU run, keep the launcher's setting."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 and not torch.cuda.is_available():
        torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    return torch.get_num_threads()
