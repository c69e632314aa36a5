"""Personalized LoRA's overhead: training tokens/s and peak memory of the expert bank against plain LoRA.

Same data (ml-100k next-title prompts), model (SmolLM2-135M), rank budget, steps and seed as the quality
table's rows: plain LoRA (`smollm2-lora-titles.yaml`, the baseline, measured in the same run), iLoRA (rank
16 as 4 experts of rank 4, gated per user by the frozen SASRec) and RecLoRA (4 meta-LoRAs of rank 8, one
shared B). Each runs in its own process, so peak memory is that process's resident maximum; tokens/s is
the trainer's counted tokens over its `train()` wall time. Adapter size: the saved adapter (+ gate) files.

    python bench/bench_plora.py --steps 20     # needs runs/ml-100k/dataset and runs/ml-100k/sasrec (make demo)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from llmrec.artifacts import read_json

CONFIGS = Path("recipes/configs/ml-100k")
VARIANTS = {
    "plain LoRA r16": ["sft", "--config", str(CONFIGS / "smollm2-lora-titles.yaml"), "--final_eval", "false",
                       "--ranking_eval_at_start", "false", "--ranking_eval_steps", "0"],
    "iLoRA 4 x r4": ["plora", "--config", str(CONFIGS / "smollm2-plora-titles.yaml")],
    "RecLoRA 4 x r8": ["plora", "--config", str(CONFIGS / "smollm2-plora-titles.yaml"), "--shape", "reclora",
                       "--lora_r", "8"],
}


def run(argv: list[str], out: Path) -> dict[str, float]:
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "llmrec.cli", "train", *argv, "--output_dir", str(out),
                             "--save_strategy", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(argv)}\n{proc.stderr.read()[-2000:]}")
    result = read_json(out / "llmrec.json")["result"]
    adapter = sum(f.stat().st_size for f in out.glob("*.safetensors"))
    return {"tokens_per_s": result["train_tokens"] / result["train_seconds"], "peak_mib": usage.ru_maxrss / 1024,
            "adapter_mib": adapter / 2**20, "wall_s": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="Training steps per variant.")
    args = parser.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, argv in VARIANTS.items():
            rows[name] = run([*argv, "--max_steps", str(args.steps)], Path(tmp) / name.split()[0])
            print(f"{name:16s} {rows[name]['tokens_per_s']:7.0f} tokens/s  peak {rows[name]['peak_mib']:6.0f} MiB  "
                  f"adapter {rows[name]['adapter_mib']:5.2f} MiB", flush=True)
    base = rows["plain LoRA r16"]
    for name, r in list(rows.items())[1:]:
        print(f"{name} vs plain LoRA: tokens/s x{r['tokens_per_s'] / base['tokens_per_s']:.2f}, peak memory "
              f"x{r['peak_mib'] / base['peak_mib']:.2f} ({r['peak_mib'] - base['peak_mib']:+.0f} MiB), adapter "
              f"x{r['adapter_mib'] / base['adapter_mib']:.2f}")


if __name__ == "__main__":
    main()
