"""mlpvision: MLP-style vision models (MLP-Mixer, ResMLP, RepMLP), their baselines, and an inductive-bias lab."""

from __future__ import annotations

from .complexity import ModelStats, count
from .errors import CheckpointError, ConfigError, DataError, InputShapeError, MlpVisionError, UnknownModelError
from .models import create_model, get_spec, list_models

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "InputShapeError",
    "MlpVisionError",
    "ModelStats",
    "UnknownModelError",
    "__version__",
    "count",
    "create_model",
    "get_spec",
    "list_models",
]
