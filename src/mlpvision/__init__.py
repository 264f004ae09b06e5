"""mlpvision: MLP-style vision models (MLP-Mixer, ResMLP, RepMLP), their baselines, and an inductive-bias lab.

The public names below are imported on first use, so that ``import mlpvision`` (and the command line's ``--help``)
does not pay for importing torch until a model, a file or an error class is asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ._version import __version__

if TYPE_CHECKING:
    from .errors import CheckpointError, ConfigError, DataError, InputShapeError, MlpVisionError, UnknownModelError
    from .io import create_model, load_checkpoint, save_model
    from .models import ModelStats, count, get_spec, list_models
    from .reparam import reparameterize

# public name -> the module that defines it
_LAZY = {
    "CheckpointError": ".errors",
    "ConfigError": ".errors",
    "DataError": ".errors",
    "InputShapeError": ".errors",
    "MlpVisionError": ".errors",
    "UnknownModelError": ".errors",
    "create_model": ".io",
    "load_checkpoint": ".io",
    "save_model": ".io",
    "ModelStats": ".models",
    "count": ".models",
    "get_spec": ".models",
    "list_models": ".models",
    "reparameterize": ".reparam",
}

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


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
