"""Model loading: embedded defaults by name, hub ids and local paths through one resolver, and one loader
for inference (plain or adapter folders)."""

from llmrec.hub.resolve import EMBEDDED, resolve_model

__all__ = ["EMBEDDED", "resolve_model"]  # load_for_inference: llmrec.hub.load (imports torch)
