"""Model files: weights plus the model name and resolved config in the safetensors metadata.

A model file needs no other information to be rebuilt: ``load_checkpoint(path)`` reads the name and config,
builds the model with :func:`~mlpvision.models.create_model` and loads the weights strictly. Plain weights (a
state dict without our metadata, timm's included) load with ``create_model(name, pretrained=path)``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._version import __version__
from ..errors import CheckpointError, MlpVisionError
from ..models import create_model as build_model
from ..models import get_spec
from .onnx_file import read_onnx_metadata
from .weights import load_into, read_metadata, read_safetensors, write_safetensors

__all__ = [
    "CONFIG_KEY",
    "DATA_KEY",
    "MODEL_NAME_KEY",
    "create_model",
    "data_metadata",
    "file_metadata",
    "load_checkpoint",
    "model_metadata",
    "save_model",
    "saved_data",
]

MODEL_NAME_KEY = "mlpvision.model"  # the registered name of the model whose weights a file holds
CONFIG_KEY = "mlpvision.config"
DATA_KEY = "mlpvision.data"  # the training data set's name, classes and normalisation


def data_metadata(name: str, classes, mean, std) -> dict[str, str]:
    """Metadata recording what a model was trained on, so evaluation and prediction need no flags."""
    keep = {"name": name, "classes": list(classes), "mean": list(mean), "std": list(std)}
    return {DATA_KEY: json.dumps(keep)}


def file_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a model file, safetensors or ONNX (by its suffix), without reading its weights."""
    return read_onnx_metadata(path) if str(path).endswith(".onnx") else read_metadata(path)


def saved_data(path: str | os.PathLike) -> dict:
    """The data description stored by :func:`data_metadata` in a model or ONNX file ({} when there is none).

    Raises:
        CheckpointError: a description that is not valid JSON, or whose normalisation cannot be applied.
    """
    try:
        data = json.loads(file_metadata(path).get(DATA_KEY, "{}"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: the data description stored in the file is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: the data description stored in the file is not a mapping")
    mean, std = data.get("mean", []), data.get("std", [])
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in [*mean, *std])
    if not (isinstance(mean, list) and isinstance(std, list) and numbers and len(mean) == len(std)):
        raise CheckpointError(f"{path}: the stored normalisation is not two equal-length lists of numbers")
    if any(v <= 0 for v in std):
        raise CheckpointError(f"{path}: the stored normalisation has a standard deviation <= 0 ({std})")
    if not isinstance(data.get("classes", []), list):
        raise CheckpointError(f"{path}: the stored class names are not a list")
    return data


def model_metadata(model: nn.Module, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The metadata that identifies a zoo model: its registered name, resolved config and library version."""
    name = getattr(model, "model_name", None)
    cfg = getattr(model, "config", None)
    if name is None or cfg is None:
        raise CheckpointError("only models built by create_model() can be saved with their config")
    meta = {MODEL_NAME_KEY: name, CONFIG_KEY: json.dumps(dataclasses.asdict(cfg)), "mlpvision.version": __version__}
    meta.update(extra or {})
    return meta


def save_model(model: nn.Module, path: str | os.PathLike, extra_metadata: dict[str, str] | None = None) -> Path:
    """Writes the model's weights with its name and config, atomically."""
    return write_safetensors(model.state_dict(), path, model_metadata(model, extra_metadata))


def _config_overrides(path: str | os.PathLike, name: str, config_json: str) -> dict[str, Any]:
    try:
        saved = json.loads(config_json)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: the config stored in the file is not valid JSON ({e})") from None
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path}: the config stored in the file is not a mapping of option: value")
    return saved  # create_model checks each value against the config's field types


def load_checkpoint(path: str | os.PathLike, device: str | torch.device | None = None) -> nn.Module:
    """Rebuilds a model saved by :func:`save_model` (or by training) and loads its weights strictly.

    Raises:
        CheckpointError: the file is missing, not safetensors, lacks the model metadata, or does not fit.
    """
    tensors, metadata = read_safetensors(path)
    name = metadata.get(MODEL_NAME_KEY)
    if name is None:
        raise CheckpointError(
            f"{path} has no model name in its metadata; load plain weights with create_model(NAME, pretrained=PATH)"
        )
    get_spec(name)  # an unknown model is an UnknownModelError, as create_model gives it
    overrides = _config_overrides(path, name, metadata.get(CONFIG_KEY, "{}"))
    try:
        model = build_model(name, device=device, **overrides)
    except (MlpVisionError, ValueError, TypeError, RuntimeError, ZeroDivisionError) as e:  # a crafted config
        raise CheckpointError(f"{path}: cannot rebuild {name} from its stored config: {e}") from None
    load_into(model, tensors, source=f"weights in {path}")
    return model.eval()


def create_model(name: str, *args: Any, pretrained: str | os.PathLike | None = None, **kwargs: Any) -> nn.Module:
    """Builds a registered model and loads local weights into it.

    Args:
        name: registered name, e.g. ``"mixer_s16_224"`` (see :func:`~mlpvision.list_models`).
        *args, **kwargs: what :func:`mlpvision.models.create_model` takes: ``num_classes``, ``in_chans``,
            ``img_size``, ``device`` and any field of the family's config (e.g. ``drop_path_rate=0.1``).
        pretrained: path of a local safetensors file to load strictly (nothing is downloaded); a file of
            another model is refused.

    Returns:
        The model, with ``model_name`` and ``config`` attributes.
    """
    model = build_model(name, *args, **kwargs)
    if pretrained is not None:
        tensors, metadata = read_safetensors(pretrained)
        saved_name = metadata.get(MODEL_NAME_KEY)
        if saved_name is not None and saved_name != name:
            raise CheckpointError(f"{pretrained} holds weights of {saved_name}, not {name}")
        load_into(model, tensors, source=f"weights in {pretrained}")
    return model
