"""Preference-alignment cost: tokens/s of DPO and softmax-DPO against SFT on the same model, and peak memory
of DPO with TRL's reference adapter (what llmrec does) against a second model copy as the reference.

Each variant runs in its own process (peak resident memory is per process), N steps of 4 prompts on
ml-100k next-title prompts, starting from the same SFT checkpoint (SmolLM2-135M + LoRA). Tokens are the
non-padding tokens of every sequence the step forwards (TRL's `num_tokens`; DPO forwards chosen and
rejected, S-DPO chosen and K negatives). The baseline, SFT, is measured in the same run.

    python bench/bench_dpo.py --sft runs/ml-100k/sft-lora-titles --steps 6
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

VARIANTS = ("sft", "dpo", "dpo-model-copy", "sdpo-k3")


def alignment_argv(a: argparse.Namespace, out: str, *extra: str) -> list[str]:
    return ["--sft_checkpoint", a.sft, "--output_dir", out, "--max_steps", str(a.steps),
            "--per_device_train_batch_size", "4", "--max_train_rows", str(4 * a.steps), "--logging_steps", "1",
            "--save_strategy", "no", "--report_to", "none", "--max_length", "256", "--gradient_checkpointing", "false",
            *extra]


def run_variant(name: str, a: argparse.Namespace) -> dict[str, float]:
    """Train one variant in this process; -> {tokens, seconds}."""
    out = f"{a.output}/{name}"
    if name == "sft":
        from llmrec.artifacts import read_json
        from llmrec.training.sft import main as sft_main

        prompts = read_json(f"{a.sft}/llmrec.json")["prompts"]
        sft_main(["--data", prompts["data"], "--item_format", prompts["item_format"], "--max_history",
                  str(prompts["max_history"]), "--system_prompt", prompts["system_prompt"], "--max_train_rows",
                  str(4 * a.steps), "--model_name_or_path", "smollm2-135m", "--use_peft", "--lora_r", "16",
                  "--lora_target_modules", "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                  "down_proj", "--max_steps", str(a.steps), "--per_device_train_batch_size", "4", "--logging_steps",
                  "1", "--save_strategy", "no", "--report_to", "none", "--max_length", "256", "--output_dir", out,
                  "--gradient_checkpointing", "false", "--final_eval", "false", "--ranking_eval_at_start", "false"])
        result = read_json(f"{out}/llmrec.json")["result"]
        return {"tokens": result["train_tokens"], "seconds": result["train_seconds"]}
    if name == "dpo-model-copy":
        return model_copy_dpo(a, out)
    from llmrec.alignment.train import main as dpo_main

    extra = ("--loss", "dpo", "--n_negatives", "1") if name == "dpo" else ("--loss", "sdpo", "--n_negatives", "3")
    dpo_main(alignment_argv(a, out, *extra, "--ranking_eval_users", "1"))
    from llmrec.artifacts import read_json

    last = read_json(f"{out}/llmrec.json")["result"]["rounds"][-1]
    return {"tokens": last["train_tokens"], "seconds": last["train_seconds"]}


def model_copy_dpo(a: argparse.Namespace, out: str) -> dict[str, float]:
    """TRL's DPOTrainer with the SFT model loaded a second time (merged) as `ref_model`: the usual setup
    without PEFT's adapter switch."""
    import numpy as np
    from trl import DPOTrainer

    from llmrec.alignment.config import RecDPOConfig
    from llmrec.alignment.negatives import NegativeSource, pick_negatives
    from llmrec.alignment.policy import load_policy
    from llmrec.alignment.preferences import preference_rows
    from llmrec.collab.sequences import CollabData
    from llmrec.hub.load import load_for_inference

    policy = load_policy(a.sft)
    rows = policy.train_rows(4 * a.steps, seed=1)
    negatives, _ = pick_negatives("random", rows, 1, NegativeSource(CollabData.from_dataset(policy.dataset)),
                                  np.random.default_rng(1))
    pairs, _ = preference_rows(rows, negatives, policy.index)
    args = RecDPOConfig(output_dir=out, max_steps=a.steps, per_device_train_batch_size=4, logging_steps=1,
                        save_strategy="no", report_to="none", max_length=256)
    trainer = DPOTrainer(model=policy.model, ref_model=load_for_inference(a.sft, merge=True), args=args,
                         train_dataset=pairs, processing_class=policy.tokenizer)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return {"tokens": max(e.get("num_tokens", 0) for e in trainer.state.log_history), "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sft", default="runs/ml-100k/sft-lora-titles", help="SFT checkpoint (recipes/sft.py).")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--output", default="/tmp/llmrec-bench-dpo")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # one variant, in a child process
    a = parser.parse_args()
    if a.variant:
        print("RESULT " + json.dumps(run_variant(a.variant, a)))
        return
    results = {}
    for name in VARIANTS:
        cmd = [sys.executable, __file__, "--variant", name, "--sft", a.sft, "--steps", str(a.steps), "--output",
               a.output]
        with tempfile.TemporaryFile("w+") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.DEVNULL, text=True)
            _, status, usage = os.wait4(proc.pid, 0)  # the child's own peak resident memory
            log.seek(0)
            line = next((x for x in log.read().splitlines() if x.startswith("RESULT ")), None)
        if os.waitstatus_to_exitcode(status) != 0 or line is None:
            sys.exit(f"{name} failed: {' '.join(cmd)}")
        results[name] = {**json.loads(line[7:]), "peak_mib": usage.ru_maxrss / 1024}  # Linux: KiB
        r = results[name]
        print(f"{name:<16} {r['tokens']:>8,.0f} tokens  {r['tokens'] / r['seconds']:>7,.0f} tokens/s  "
              f"peak {r['peak_mib']:,.0f} MiB", flush=True)
    speed = {n: r["tokens"] / r["seconds"] for n, r in results.items()}
    print(f"DPO vs SFT: {speed['dpo'] / speed['sft']:.2f}x tokens/s; S-DPO (K=3) vs SFT: "
          f"{speed['sdpo-k3'] / speed['sft']:.2f}x tokens/s")
    print(f"peak memory, reference adapter vs a second model copy: "
          f"{results['dpo']['peak_mib'] / results['dpo-model-copy']['peak_mib']:.2f}x")


if __name__ == "__main__":
    main()
