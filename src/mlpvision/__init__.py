"""mlpvision: MLP-style vision models (MLP-Mixer, ResMLP, RepMLP), their baselines, and an inductive-bias lab."""

from __future__ import annotations

from ._version import __version__
from .errors import CheckpointError, ConfigError, DataError, InputShapeError, MlpVisionError, UnknownModelError
from .io import create_model, load_checkpoint, save_model
from .models import ModelStats, count, get_spec, list_models
from .reparam import reparameterize

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
    "load_checkpoint",
    "reparameterize",
    "save_model",
]
