"""Errors a user can fix. The CLI prints them as one line and exits non-zero, without a traceback."""

from __future__ import annotations

from pathlib import Path


class LlmrecError(Exception):
    """A problem with the user's input, configuration or environment (not a bug in llmrec)."""


class DataError(LlmrecError):
    """Bad input data, located as precisely as we can: `file:line: field 'x': message`."""

    def __init__(self, path: str | Path, message: str, *, line: int | None = None, field: str | None = None):
        self.path, self.line, self.field = str(path), line, field
        where = self.path if line is None else f"{self.path}:{line}"
        what = message if field is None else f"field '{field}': {message}"
        super().__init__(f"{where}: {what}")
