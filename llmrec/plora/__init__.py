"""Personalized LoRA: per-user mixtures of LoRA experts gated by a collaborative user representation.

Two published shapes (iLoRA, Kong et al. 2024; RecLoRA, Zhu et al. 2024) as one PEFT custom layer
(`layer.py`), a gate over a frozen SASRec sequence embedding or a learned user-id embedding (`gate.py`,
`users.py`), the model wrapper that computes the gate once per forward (`model.py`) and the folder format
(`folder.py`).
"""

from llmrec.plora.folder import load_plora, save_plora
from llmrec.plora.gate import GateSlot, Router, gate_weights
from llmrec.plora.layer import PersonalLinear, personal_linear
from llmrec.plora.model import Personalizer, PLoRASettings, personalize
from llmrec.plora.users import IdUsers, SasrecUsers, UserSource, history_positions

__all__ = ["GateSlot", "IdUsers", "PLoRASettings", "PersonalLinear", "Personalizer", "Router", "SasrecUsers",
           "UserSource", "gate_weights", "history_positions", "load_plora", "personal_linear", "personalize",
           "save_plora"]
