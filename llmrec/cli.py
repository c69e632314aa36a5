"""The `llmrec` command: `llmrec GROUP ACTION [options]`, each action a thin `main(argv)` in the library.

The scripts under data_prep/, eval/ and recipes/ call the same `main` functions, so both forms behave
alike. A user error (`LlmrecError`) prints one line and exits with status 2; no traceback.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

from llmrec.errors import LlmrecError

# (group, action) -> (module with main(argv), one-line description)
COMMANDS = {
    ("data", "prepare"): ("llmrec.data.prepare", "raw files or a named dataset -> a split dataset folder"),
    ("index", "build"): ("llmrec.indexing.build", "dataset folder -> item index (semantic IDs or P5 ids)"),
    ("prompts", "build"): ("llmrec.prompts.build", "dataset folder (+ index) -> chat datasets for TRL (Arrow, JSONL)"),
    ("train", "collab"): ("llmrec.collab.train", "fit SASRec, BPR or EASE (same as recipes/collab.py)"),
    ("train", "rerank"): ("llmrec.rerank.train", "fine-tune an LLM re-ranker of a retriever's candidates"),
    ("train", "sft"): ("llmrec.training.sft", "fine-tune an LLM recommender (same as recipes/sft.py)"),
    ("eval", "rank"): (
        "llmrec.evaluation.rank",
        "score ranked lists (rankings.jsonl) -> metrics with CIs, report, plots",
    ),
    ("eval", "zeroshot"): (
        "llmrec.zeroshot.run",
        "ask any LLM endpoint (or local model) for recommendations -> the same report as eval rank",
    ),
    ("eval", "compare"): ("llmrec.evaluation.compare", "paired significance test between two report folders"),
    ("models", "fetch"): ("llmrec.models.resolve", "resolve models by name (embedded defaults) and print their paths"),
}


def usage() -> str:
    lines = ["usage: llmrec GROUP ACTION [options]   (llmrec GROUP ACTION --help for options)", "", "commands:"]
    lines += [f"  llmrec {g + ' ' + a:<16} {desc}" for (g, a), (_, desc) in COMMANDS.items()]
    return "\n".join(lines)


def run_guarded(fn: Callable[[], None]) -> int:
    """Call `fn`, turning user errors into one line on stderr and exit status 2."""
    try:
        fn()
    except LlmrecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # TrlParser reports unknown config keys and non-mapping YAML this way
        if str(e).startswith(("Unknown arguments from config file", "Config file")):
            print(f"error: {e}", file=sys.stderr)
            return 2
        raise
    return 0


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
