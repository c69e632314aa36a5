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


def check_at_least(config: object, minimum: dict[str, float], *, positive: tuple[str, ...] = ()) -> None:
    """Refuse options below their minimum (`minimum`: flag name -> smallest valid value) or not above 0
    (`positive`), before they fail deep inside a library as a traceback. Unset (None) options pass."""
    for name, low in minimum.items():
        value = getattr(config, name)
        if value is not None and value < low:
            raise LlmrecError(f"--{name} must be at least {low}, got {value}")
    for name in positive:
        value = getattr(config, name)
        if value is not None and value <= 0:
            raise LlmrecError(f"--{name} must be positive, got {value}")
