"""The `llmrec` command: `llmrec GROUP ACTION [options]`, each action a thin `main(argv)` in the library.

The scripts under data_prep/, eval/ and recipes/ call the same `main` functions, so both forms behave
alike. A user error (`LlmrecError`) prints one line and exits with status 2; no traceback. Every `main` parses its
options with `parse_args`, so a misspelt flag or config key is such an error too, named with its closest
valid spelling.
"""

from __future__ import annotations

import argparse
import difflib
import functools
import importlib
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn

from llmrec.errors import LlmrecError

# (group, action) -> (module with main(argv), one-line description)
COMMANDS = {
    ("data", "prepare"): ("llmrec.data.prepare", "raw files or a named dataset -> a split dataset folder"),
    ("index", "build"): ("llmrec.indexing.build", "dataset folder -> item index (semantic IDs or P5 ids)"),
    ("prompts", "build"): ("llmrec.prompts.build", "dataset folder (+ index) -> chat datasets for TRL (Arrow, JSONL)"),
    ("train", "collab"): ("llmrec.collab.train", "fit SASRec, BPR, EASE or an LLM item head (recipes/collab.py)"),
    ("train", "rerank"): ("llmrec.rerank.train", "fine-tune an LLM re-ranker of a retriever's candidates"),
    ("train", "sft"): ("llmrec.training.sft", "fine-tune an LLM recommender (same as recipes/sft.py)"),
    ("train", "dpo"): ("llmrec.alignment.train", "align an SFT recommender with DPO / softmax-DPO (recipes/dpo.py)"),
    ("train", "grpo"): ("llmrec.rl.train", "GRPO of an SFT recommender with ranking rewards (recipes/grpo.py)"),
    ("train", "plora"): ("llmrec.plora.train", "personalized LoRA (iLoRA / RecLoRA experts) by SFT (recipes/plora.py)"),
    ("eval", "rank"): (
        "llmrec.evaluation.rank",
        "score ranked lists (rankings.jsonl) -> metrics with CIs, report, plots",
    ),
    ("eval", "zeroshot"): (
        "llmrec.zeroshot.run",
        "ask any LLM endpoint (or local model) for recommendations -> the same report as eval rank",
    ),
    ("eval", "compare"): ("llmrec.evaluation.compare", "paired significance test between two report folders"),
    ("models", "fetch"): ("llmrec.hub.resolve", "resolve models by name (embedded defaults) and print their paths"),
}


def usage() -> str:
    lines = ["usage: llmrec GROUP ACTION [options]   (llmrec GROUP ACTION --help for options)", "", "commands:"]
    lines += [f"  llmrec {g + ' ' + a:<16} {desc}" for (g, a), (_, desc) in COMMANDS.items()]
    return "\n".join(lines)


def run_guarded(fn: Callable[[], None]) -> int:
    """Call `fn`, turning user errors into one line on stderr and exit status 2; a launched rank then leaves its
    process group (`end_process_group`)."""
    try:
        fn()
    except LlmrecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if "torch.distributed" in sys.modules:  # only a run that imported torch can have joined a group
            from llmrec.hardware import end_process_group

            end_process_group()
    return 0


def parse_args(types: type | Iterable[type], argv: list[str] | None, prog: str) -> tuple[Any, ...]:
    """Dataclass instances from flags and an optional `--config FILE.yaml` (flags win), as TRL's `TrlParser`
    gives them, except that every mistake in either is one `LlmrecError` line instead of argparse's usage
    text or a traceback."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser = _parser_class()(types, prog=prog, allow_abbrev=False)  # `--max_step` must not pass for --max_steps
    config = _check_config(args)
    if config is not None:  # before parsing: a misspelt key can be why a required option seems missing
        _refuse_unknown_keys(*config, parser)
    try:
        *parsed, _, rest = parser.parse_args_and_config(
            args, return_remaining_strings=True, separate_remaining_strings=True
        )
    except ValueError as e:  # a dataclass's own check of its options, e.g. TrainingArguments on a combination
        raise LlmrecError(" ".join(str(e).split())) from None
    if rest:
        raise LlmrecError(_unknown_flags(rest, parser))
    return tuple(parsed)


@functools.cache
def _parser_class() -> type:
    from trl import TrlParser  # imported here: `llmrec --help` should not wait for trl to load

    class Parser(TrlParser):
        def error(self, message: str) -> NoReturn:  # argparse would print its usage and exit; one line is enough
            raise LlmrecError(message)

    return Parser


def _check_config(args: list[str]) -> tuple[Path, list[str]] | None:
    """Validate the `--config` file TrlParser will read (it would raise a traceback on a missing or broken
    one); -> (path, its keys), or None without `--config`. Rewrites `--config=F` as TrlParser expects."""
    import yaml

    for n, arg in enumerate(args):
        if arg.startswith("--config="):
            args[n : n + 1] = ["--config", arg.split("=", 1)[1]]
    if "--config" not in args:
        return None
    at = args.index("--config")
    if at + 1 == len(args) or args[at + 1].startswith("--"):
        raise LlmrecError("--config needs a YAML file")
    path = Path(args[at + 1])
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise LlmrecError(f"{path}: {'no such file' if isinstance(e, FileNotFoundError) else e.strerror}") from None
    except yaml.YAMLError as e:
        raise LlmrecError(f"{path}: invalid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(config, dict) or not isinstance(config.get("env", {}), dict):
        raise LlmrecError(f"{path}: must contain a YAML mapping (key: value lines; `env` a mapping too)")
    return path, [str(k) for k in config if k != "env"]


def _refuse_unknown_keys(path: Path, keys: list[str], parser: argparse.ArgumentParser) -> None:
    valid = sorted({a.dest for a in parser._actions if a.dest != "help"})
    unknown = [k for k in keys if k not in valid]
    if unknown:
        named = ", ".join(f"'{k}'" + _suggestion(k, valid, "'{}'") for k in unknown)
        raise LlmrecError(f"{path}: unknown key{'s' * (len(unknown) > 1)} {named}")


def _unknown_flags(rest: list[str], parser: argparse.ArgumentParser) -> str:
    """One line naming the flags argparse did not recognise (their values are not named)."""
    flags = [a.split("=", 1)[0] for a in rest if a.startswith("-") and not _is_number(a)]
    if not flags:
        return f"unexpected argument '{rest[0]}'"
    valid = sorted({s for a in parser._actions for s in a.option_strings if s.startswith("--") and s != "--help"})
    named = ", ".join(f + _suggestion(f, valid + ["--config"], "{}") for f in flags)
    return f"unknown flag{'s' * (len(flags) > 1)} {named}"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _suggestion(word: str, valid: list[str], quote: str) -> str:
    close = difflib.get_close_matches(word, valid, n=1)
    return f" (did you mean {quote.format(close[0])}?)" if close else ""


def run(module: str, argv: list[str]) -> int:
    return run_guarded(lambda: importlib.import_module(module).main(argv))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[0] in ("-h", "--help"):
        print(usage())
        sys.exit(0 if argv and argv[0] in ("-h", "--help") else 2)
    key = (argv[0], argv[1])
    if key not in COMMANDS:
        print(f"error: unknown command 'llmrec {' '.join(key)}'\n\n{usage()}", file=sys.stderr)
        sys.exit(2)
    sys.exit(run(COMMANDS[key][0], argv[2:]))


if __name__ == "__main__":
    main()
