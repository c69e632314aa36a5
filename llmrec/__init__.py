"""llmrec: fine-tune and evaluate LLM-based recommenders.

The stages meet at artifact folders (see docs/architecture.md): `llmrec.data` turns raw files into a
dataset folder, and every later stage reads that folder through `llmrec.data.PreparedDataset`.
"""

__version__ = "0.1.0"
