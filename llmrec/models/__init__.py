"""Model loading: embedded defaults by name, hub ids and local paths through one resolver."""

from llmrec.models.resolve import EMBEDDED, resolve_model

__all__ = ["EMBEDDED", "resolve_model"]
