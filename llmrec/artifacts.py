"""Atomic, self-describing artifact folders and JSON files.

Every stage writes its output into a temporary sibling folder and renames it into place only when
complete, so a crash never leaves a half-written artifact that a later stage could mistake for a good one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from llmrec.errors import LlmrecError


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` that is renamed to `path` only if the block finishes; a failed
    or interrupted write leaves the old file (or none), never half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically (temp file + rename in the same folder)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False) + "\n", encoding="utf-8")


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    """One JSON object per line, written atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LlmrecError(f"{path}: missing (is this an llmrec artifact folder?)") from None
    except json.JSONDecodeError as e:
        raise LlmrecError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None


@contextlib.contextmanager
def atomic_dir(output: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder that replaces `output` only if the block finishes without error."""
    output = Path(output)
    if output.exists() and not overwrite:
        raise LlmrecError(f"{output}: already exists; pass --overwrite to replace it")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp"))
    except OSError as e:
        raise LlmrecError(f"{output}: cannot write here ({e.strerror})") from None
    try:
        yield tmp
        if output.exists():
            old = output.with_name(f".{output.name}.old-{os.getpid()}")
            os.replace(output, old)
            os.replace(tmp, output)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def provenance(config: Any = None) -> dict[str, Any]:
    """What made an artifact: llmrec and library versions, the command line, the settings, the time."""
    versions = {"python": platform.python_version()}
    for pkg in ("llmrec", "numpy", "pyarrow", "torch", "transformers", "trl", "peft", "datasets"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[pkg] = metadata.version(pkg)
    return {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": sys.argv,
        "config": config,
        "versions": versions,
    }


def cache_dir(*parts: str) -> Path:
    """llmrec's cache: `$LLMREC_CACHE`, else `$XDG_CACHE_HOME/llmrec`, else `~/.cache/llmrec`."""
    root = os.environ.get("LLMREC_CACHE")
    if not root:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "llmrec")
    path = Path(root, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
