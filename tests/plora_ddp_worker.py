"""Run by test_plora_recipe.py under `accelerate launch` with 2 CPU ranks: the plora recipe, then each rank writes the
trainable weights it ends with (router included) and its logged losses, for the test to compare across ranks
and with a one-process run."""

import json
import os
import sys
from pathlib import Path

from llmrec.hardware import end_process_group
from llmrec.plora import train

captured = {}
original_train = train.PLoRATrainer.train


def train_and_capture(self, *args, **kwargs):
    out = original_train(self, *args, **kwargs)
    captured["model"] = self.accelerator.unwrap_model(self.model)
    captured["processes"] = self.accelerator.num_processes  # 1 if the ranks never joined one process group
    return out


train.PLoRATrainer.train = train_and_capture
result = train.train_plora(*train.parse_args(train.ARG_TYPES, sys.argv[1:], prog="plora_ddp_worker"))
weights = {n: p.detach().double().cpu() for n, p in captured["model"].named_parameters() if p.requires_grad}
rank = int(os.environ.get("RANK", 0))
Path(os.environ["LLMREC_DDP_DUMP"], f"rank{rank}.json").write_text(json.dumps({
    "world_size": captured["processes"],
    "weights": {n: w.flatten().tolist() for n, w in weights.items()},
    "loss_history": result["loss_history"],
}))
end_process_group()  # as llmrec's own commands do on exit (llmrec.cli.run_guarded)
