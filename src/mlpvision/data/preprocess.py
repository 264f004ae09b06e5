"""How a model's images are prepared: the data config resolved for a model or a model file, and the transform
built from it (timm's ``resolve_data_config`` / ``create_transform`` for evaluation, on torchvision v2).

A model file trained here records its training set's normalisation, and its images are resized straight to the
model's input. A file that records none (converted or plain weights) is prepared as its ``pretrained_cfg`` says:
the shorter side resized to ``size / crop_pct`` with its interpolation, a centre crop of ``size``, its mean and std.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from torchvision.transforms import InterpolationMode, v2

from ..errors import CheckpointError, ConfigError
from ..io import CONFIG_KEY, MODEL_NAME_KEY, file_metadata, saved_data, saved_pretrained_cfg
from ..models import create_model

__all__ = ["DataConfig", "create_transform", "resolve_data_config"]

INTERPOLATIONS = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}


@dataclass(frozen=True)
class DataConfig:
    """Everything needed to turn an image file into a model input.

    Attributes:
        input_size: (channels, height, width) of the model's input.
        mean, std: per-channel normalisation of [0, 1] pixels.
        interpolation: resize filter, "bilinear", "bicubic" or "nearest".
        crop_pct: the centre crop's share of the resized shorter side (1.0: resize straight to the input size).
        source: where the normalisation came from: "file" (the training set recorded in a model file),
            "pretrained_cfg" (the model's, or the one a converted file records) or "given".
    """

    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bilinear"
    crop_pct: float = 1.0
    source: str = "pretrained_cfg"

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {self.interpolation!r}")
        if not 0 < self.crop_pct <= 1:
            raise ConfigError(f"crop_pct must be in (0, 1], got {self.crop_pct}")
        if not (len(self.mean) == len(self.std) == self.input_size[0]) or any(s <= 0 for s in self.std):
            raise ConfigError(
                f"mean {self.mean} and std {self.std} need one value per input channel ({self.input_size[0]}), std > 0"
            )


def _from_pretrained_cfg(cfg: dict[str, Any], source: str = "pretrained_cfg") -> DataConfig:
    return DataConfig(
        tuple(int(v) for v in cfg["input_size"]),
        tuple(float(v) for v in cfg["mean"]),
        tuple(float(v) for v in cfg["std"]),
        cfg.get("interpolation", "bilinear"),
        float(cfg.get("crop_pct", 1.0)),
        source,
    )


def _file_model_cfg(path: str | os.PathLike) -> dict[str, Any] | None:
    """The ``pretrained_cfg`` of the model a file holds (built on the meta device from its stored config)."""
    meta = file_metadata(path)
    name = meta.get(MODEL_NAME_KEY)
    if name is None:
        return None
    try:
        config = json.loads(meta.get(CONFIG_KEY, "{}"))
        return create_model(name, device="meta", **config).pretrained_cfg
    except Exception as e:
        raise CheckpointError(f"{path}: cannot rebuild {name} from its stored config: {e}") from None


def resolve_data_config(
    model: nn.Module | None = None, model_file: str | os.PathLike | None = None, **overrides: Any
) -> DataConfig:
    """The data config of a model, a model file, or both.

    Priority: ``overrides`` (``mean``, ``std``, ``interpolation``, ``crop_pct``, ``input_size``) > the training
    set's normalisation a model file records > the ``pretrained_cfg`` a converted file records > the model's own
    ``pretrained_cfg``.

    Args:
        model: a zoo model (its ``pretrained_cfg`` and input size).
        model_file: a model file (safetensors or ONNX) whose metadata may record how its images were prepared.
        **overrides: fields of :class:`DataConfig` to set.
    """
    cfg: DataConfig | None = None
    if model is not None and getattr(model, "pretrained_cfg", None):
        cfg = _from_pretrained_cfg(model.pretrained_cfg)
    if model_file is not None:
        file_cfg = saved_pretrained_cfg(model_file) if not str(model_file).endswith(".onnx") else {}
        base = file_cfg or (None if cfg is not None else _file_model_cfg(model_file))
        if base:
            if cfg is not None:  # the model's sizes stand; the file says how its weights expect images
                base = {**base, "input_size": (cfg.input_size[0], *cfg.input_size[1:])}
                if len(base["mean"]) != cfg.input_size[0]:
                    base = {**base, "mean": cfg.mean, "std": cfg.std}
            cfg = _from_pretrained_cfg(base)
        saved = saved_data(model_file)
        if saved.get("mean") and cfg is not None:
            cfg = replace(cfg, mean=tuple(saved["mean"]), std=tuple(saved["std"]), crop_pct=1.0, source="file")
            cfg = replace(cfg, interpolation="bilinear")
    if cfg is None:
        raise ConfigError("resolve_data_config needs a zoo model or a model file that names its model")
    if overrides:
        cfg = replace(cfg, **{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}, source="given")
    return cfg


def create_transform(cfg: DataConfig, normalize: bool = True) -> v2.Compose:
    """The evaluation transform of ``cfg``: PIL image (or uint8 tensor) -> float tensor (C, H, W).

    The shorter side is resized to ``floor(size / crop_pct)`` (antialiased) and the centre ``size`` x ``size``
    cropped, then pixels are scaled to [0, 1] and, with ``normalize``, standardised with ``cfg.mean`` / ``cfg.std``.
    The image must already have the model's channel count (convert PIL images to "L" or "RGB" first).
    """
    size = cfg.input_size[-1]
    ops = [
        v2.ToImage(),
        v2.Resize(math.floor(size / cfg.crop_pct), interpolation=INTERPOLATIONS[cfg.interpolation], antialias=True),
        v2.CenterCrop(size),
        v2.ToDtype(torch.float32, scale=True),
    ]
    if normalize:
        ops.append(v2.Normalize(list(cfg.mean), list(cfg.std)))
    return v2.Compose(ops)
