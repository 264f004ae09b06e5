"""Model files: weights plus the model name and resolved config in the safetensors metadata.

A model file needs no other information to be rebuilt: ``load_checkpoint(path)`` reads the name and config,
builds the model with :func:`~mlpvision.models.create_model` and loads the weights strictly.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._version import __version__
from .errors import CheckpointError, MlpVisionError
from .models import create_model, get_spec
from .models.registry import MODEL_NAME_KEY
from .reparam import reparameterize
from .weights import load_into, read_metadata, read_safetensors, write_safetensors

__all__ = [
    "DeployReport",
    "data_metadata",
    "deploy_checkpoint",
    "load_checkpoint",
    "model_metadata",
    "save_model",
    "saved_data",
]

CONFIG_KEY = "mlpvision.config"
DATA_KEY = "mlpvision.data"  # the training data set's name, classes and normalisation


def data_metadata(name: str, classes, mean, std) -> dict[str, str]:
    """Metadata recording what a model was trained on, so evaluation and prediction need no flags."""
    keep = {"name": name, "classes": list(classes), "mean": list(mean), "std": list(std)}
    return {DATA_KEY: json.dumps(keep)}


def saved_data(path: str | os.PathLike) -> dict:
    """The data description stored by :func:`data_metadata` in a model or ONNX file ({} when there is none)."""
    if str(path).endswith(".onnx"):
        from .export import read_onnx_metadata

        return json.loads(read_onnx_metadata(path).get(DATA_KEY, "{}"))
    return json.loads(read_metadata(path).get(DATA_KEY, "{}"))


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


def _config_overrides(name: str, config_json: str) -> dict[str, Any]:
    try:
        saved = json.loads(config_json)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"the config stored in the file is not valid JSON ({e})") from None
    default = get_spec(name).config
    fields = {f.name: getattr(default, f.name) for f in dataclasses.fields(default)}
    # JSON has no tuples: give back the config's own types
    return {k: tuple(v) if isinstance(fields.get(k), tuple) and isinstance(v, list) else v for k, v in saved.items()}


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
    overrides = _config_overrides(name, metadata.get(CONFIG_KEY, "{}"))
    try:
        model = create_model(name, device=device, **overrides)
    except MlpVisionError as e:
        raise CheckpointError(f"{path}: cannot rebuild {name} from its stored config: {e}") from None
    load_into(model, tensors, source=f"weights in {path}")
    return model.eval()


@dataclasses.dataclass(frozen=True)
class DeployReport:
    """What :func:`deploy_checkpoint` did."""

    model: str
    params_before: int
    params_after: int
    max_abs_diff: float  # between train and deploy form on random input, in eval mode
    output_scale: float  # max |output| of the train form on that input
    path: Path


@torch.no_grad()
def deploy_checkpoint(
    src: str | os.PathLike, dst: str | os.PathLike, batch_size: int = 4, rtol: float = 1e-4, seed: int = 0
) -> DeployReport:
    """Converts a train-form model file to its deploy form, verifies it, and saves it with its metadata.

    The conversion is checked on a random input batch: the largest output difference must stay below
    ``rtol`` times the output scale, else nothing is written.
    """
    model = load_checkpoint(src)
    deployed = reparameterize(model)
    gen = torch.Generator().manual_seed(seed)
    size = model.img_size
    x = torch.randn(batch_size, model.in_chans, size, size, generator=gen)
    before, after = model(x), deployed(x)
    diff = (before - after).abs().max().item()
    scale = before.abs().max().item()
    if not diff <= rtol * max(scale, 1e-12):
        raise CheckpointError(f"deploy form differs from the train form by {diff:.3g} (output scale {scale:.3g})")
    data = read_metadata(src).get(DATA_KEY)
    out = save_model(deployed, dst, {DATA_KEY: data} if data else None)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return DeployReport(model.model_name, count(model), count(deployed), diff, scale, out)
