"""The test app's structured config, in an importable module (what joblib needs)."""

from dataclasses import dataclass, field
from typing import Any, Dict


@dataclass
class Model:
    name: str = "mlp"
    hidden: int = 32
    channels: int = 0


@dataclass
class Config:
    model: Model = field(default_factory=Model)
    lr: float = 0.01
    epochs: int = 2
    seed: int = 0
    total_steps: int = 0  # derived by update=
    notes: Dict[str, Any] = field(default_factory=dict)
