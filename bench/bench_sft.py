"""SFT throughput: padded vs packed (padding-free) batches, and llmrec's overhead over bare TRL.

Also the default precision (bf16 autocast on a CPU with native bf16) against fp32. Same data (ml-100k
next-title prompts), same model (SmolLM2-135M + LoRA r=16 on all projections), same
steps and seed. Throughput is training tokens (non-padding, as TRL counts them) per second of
`trainer.train()` wall time. Packing uses TRL's BFD strategy, which is padding-free (position ids mark
the sequence boundaries); TRL's padding_free without packing needs max_length=None, so it is not a run
here. The baseline, measured in the same run, is a bare TRL `SFTTrainer` given the
rows llmrec renders; "overhead" is llmrec's train_sft (callbacks, item-token hook) over it.

    python bench/bench_sft.py                  # needs runs/ml-100k/dataset (make demo)
    python bench/bench_sft.py --steps 20 --model smollm2-135m
"""

from __future__ import annotations

import argparse
import time

from trl import ModelConfig, SFTTrainer, TrlParser

from llmrec.hardware import cpu_has_bf16
from llmrec.prompts.build import PromptBuildConfig
from llmrec.training.config import RecArguments, RecSFTConfig
from llmrec.training.sft import train_sft


def parse(args: list[str]):
    return TrlParser((PromptBuildConfig, RecArguments, RecSFTConfig, ModelConfig)).parse_args_and_config(args)


def tokens_per_second(log_history: list[dict], seconds: float) -> tuple[float, float]:
    tokens = max(e.get("num_tokens", 0) for e in log_history)
    return tokens, tokens / seconds


def bare_trl(args: list[str]) -> tuple[float, float]:
    from llmrec.data.dataset import PreparedDataset
    from llmrec.prompts.build import build_prompt_datasets
    from llmrec.training.model import load_for_training
    from llmrec.training.sft import load_index

    prompts, rec, targs, margs = parse(args)
    dataset = PreparedDataset.load(prompts.data)
    index = load_index(prompts, dataset)
    model, tokenizer, peft_config = load_for_training(margs, rec, index)
    rows = build_prompt_datasets(prompts, dataset, index)["train"]
    trainer = SFTTrainer(model=model, args=targs, train_dataset=rows, processing_class=tokenizer,
                         peft_config=peft_config)
    start = time.perf_counter()
    trainer.train()
    return tokens_per_second(trainer.state.log_history, time.perf_counter() - start)


def ours(args: list[str]) -> tuple[float, float]:
    result = train_sft(*parse(args))
    return result["train_tokens"], result["train_tokens"] / result["train_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="runs/ml-100k/dataset")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--output", default="/tmp/llmrec-bench-sft")
    a = parser.parse_args()
    lora = ["--use_peft", "--lora_r", "16", "--lora_target_modules", "q_proj", "k_proj", "v_proj", "o_proj",
            "gate_proj", "up_proj", "down_proj"]
    common = ["--data", a.data, "--item_format", "title", "--max_history", "5", "--max_train_rows", str(8 * a.steps),
              "--model_name_or_path", a.model, *lora, "--max_steps", str(a.steps), "--per_device_train_batch_size", "8",
              "--gradient_checkpointing", "false", "--logging_steps", "1", "--save_strategy", "no",
              "--max_length", "256", "--report_to", "none", "--final_eval", "false", "--ranking_eval_at_start", "false"]
    runs = {
        "bare TRL (padded)": (bare_trl, common + ["--output_dir", f"{a.output}/trl"]),
        "llmrec (padded)": (ours, common + ["--output_dir", f"{a.output}/padded"]),
        "llmrec packing": (ours, common + ["--output_dir", f"{a.output}/packed", "--packing", "true"]),
        "llmrec fp32": (ours, common + ["--output_dir", f"{a.output}/fp32", "--bf16", "false"]),
    }
    # A discarded 2-step run first: the first training run in a process pays one-time costs (allocator,
    # thread pools) that would otherwise count against whichever run goes first.
    bare_trl([*common, "--max_steps", "2", "--output_dir", f"{a.output}/warmup"])
    results = {}
    for name, (fn, args) in runs.items():
        results[name] = fn(args)
        print(f"{name:<22} {results[name][0]:>8,.0f} tokens  {results[name][1]:>8,.0f} tokens/s", flush=True)
    base, padded = results["bare TRL (padded)"][1], results["llmrec (padded)"][1]
    print(f"llmrec overhead over bare TRL: {(base / padded - 1):+.1%} (target < 5%)")
    print(f"packed (padding-free BFD) vs padded: {results['llmrec packing'][1] / padded:.2f}x tokens/s")
    print(f"default precision (bf16 autocast where the CPU has it: {cpu_has_bf16()}) vs fp32: "
          f"{padded / results['llmrec fp32'][1]:.2f}x tokens/s")


if __name__ == "__main__":
    main()
