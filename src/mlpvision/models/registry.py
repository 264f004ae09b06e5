"""The model registry: every model has a name, a class and a frozen config; ``create_model`` builds it.

Each family file ends with one :func:`register_family` call over its variant table (``name -> Variant``).
Loading weights from a file is not done here: ``mlpvision.create_model(name, pretrained=PATH)`` (in
:mod:`mlpvision.io`) builds with this module and then loads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from ..errors import ConfigError, UnknownModelError, brief
from ..fields import check_config, checked_fields, option
from .features import wrap_features
from .pretrained_cfg import IMAGENET_DEFAULT, DataDefaults, build_pretrained_cfg

__all__ = [
    "MAX_DEPTH",
    "MAX_SIDE",
    "MAX_WIDTH",
    "ModelConfig",
    "ModelSpec",
    "Variant",
    "create_model",
    "get_spec",
    "list_models",
    "register_family",
    "register_model",
    "resolve_config",
]


# The ranges of model config fields: generous for every published architecture, small enough that no config can
# ask for more than a machine could build (the parameter budget of io.model_file bounds the whole model).
MAX_SIDE = 4096  # input side, patch and partition sides
MAX_WIDTH = 65536  # channels, token widths, MLP hidden widths, classes
MAX_DEPTH = 1024  # blocks of a model or a stage


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Fields every model config has; each family's config extends it. Each field declares its range
    (:func:`~mlpvision.fields.option`); a config is checked whenever it is built."""

    num_classes: int = option(1000, ge=0, le=MAX_WIDTH * 4)  # size of the classifier head; 0 means no head
    in_chans: int = option(3, ge=1, le=1024)  # input image channels
    img_size: int = option(224, ge=1, le=MAX_SIDE)  # input side length (fixed for MLP models; nominal for convnets)
    deploy: bool = False  # build the deploy form of re-parameterizable parts (no-op for other models)

    def __post_init__(self) -> None:
        check_config(self, f"{type(self).__name__} option(s)")


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: the class to build, its default config, and what to say about it."""

    name: str
    cls: type[nn.Module]
    config: ModelConfig
    family: str
    paper: str = ""
    description: str = ""
    timm_name: str | None = None  # the same architecture in timm, when timm has it
    data: DataDefaults = IMAGENET_DEFAULT  # the family's ImageNet preprocessing (see pretrained_cfg.py)

    def pretrained_cfg(self, config: ModelConfig | None = None) -> dict[str, Any]:
        """timm's ``pretrained_cfg`` of this model built from ``config`` (its registered config by default)."""
        cfg = config or self.config
        classifier = getattr(self.cls, "head_name", "head")
        fixed = getattr(self.cls, "fixed_input_size", True)
        return build_pretrained_cfg(cfg, self.data, self.config.img_size, classifier, fixed)

    def build(self, config: ModelConfig | None = None) -> nn.Module:
        cfg = config or self.config
        model = self.cls(cfg)
        model.model_name = self.name
        model.config = cfg
        model.pretrained_cfg = self.pretrained_cfg(cfg)
        model.pretrained_cfg["fixed_input_size"] = getattr(model, "fixed_input_size", True)
        # the layer that reads the image, in this form of the model (train or deploy form, either stem)
        stem = next(
            (n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.in_channels == cfg.in_chans), None
        )
        if stem is not None:
            model.pretrained_cfg["first_conv"] = stem
        return model


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    cls: type[nn.Module],
    config: ModelConfig,
    *,
    family: str,
    paper: str = "",
    description: str = "",
    timm_name: str | None = None,
    data: DataDefaults = IMAGENET_DEFAULT,
) -> ModelSpec:
    """Adds a model to the registry; a name can be registered only once."""
    if name in _REGISTRY:
        raise ValueError(f"model name {name!r} is already registered")
    spec = ModelSpec(name, cls, config, family, paper, description, timm_name, data)
    _REGISTRY[name] = spec
    return spec


class Variant(NamedTuple):
    """One row of a family's variant table."""

    config: ModelConfig
    description: str
    timm_name: str | None = None  # the same architecture in timm, when timm has it


def register_family(
    family: str,
    cls: type[nn.Module],
    variants: Mapping[str, Variant],
    paper: str = "",
    data: DataDefaults = IMAGENET_DEFAULT,
) -> list[ModelSpec]:
    """Registers every variant of a family: ``variants`` maps each name to its :class:`Variant` row, all built by
    ``cls``; ``data`` is the family's ImageNet preprocessing (its ``pretrained_cfg``)."""
    return [
        register_model(
            name,
            cls,
            v.config,
            family=family,
            paper=paper,
            description=v.description,
            timm_name=v.timm_name,
            data=data,
        )
        for name, v in variants.items()
    ]


def list_models(pattern: str = "*", family: str | None = None) -> list[str]:
    """Sorted names matching a shell-style ``pattern`` (e.g. ``"resmlp_*"``), optionally of one family."""
    return sorted(
        n for n, s in _REGISTRY.items() if fnmatch.fnmatchcase(n, pattern) and (family is None or s.family == family)
    )


def get_spec(name: str) -> ModelSpec:
    """The registered spec of ``name``; an unknown name raises with the closest registered names."""
    if not isinstance(name, str) or len(name) > 200:  # no registered name looks like that: no close matches either
        raise UnknownModelError(f"unknown model {brief(name)}; `mlpvision models` lists them")
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `mlpvision models` lists them"
        raise UnknownModelError(f"unknown model {name!r}{hint}") from None


def resolve_config(name: str, **overrides: Any) -> ModelConfig:
    """The config of ``name`` with ``overrides`` applied; an unknown option raises :class:`ConfigError`."""
    spec = get_spec(name)
    fields = {f.name for f in dataclasses.fields(spec.config)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ConfigError(
            f"{name} has no option {', '.join(map(repr, unknown))}; its options are: {', '.join(sorted(fields))}"
        )
    return dataclasses.replace(spec.config, **checked_fields(type(spec.config), overrides, f"{name} option"))


def create_model(
    name: str,
    num_classes: int | None = None,
    in_chans: int | None = None,
    img_size: int | None = None,
    device: str | torch.device | None = None,
    features_only: bool = False,
    out_indices: int | Sequence[int] | None = None,
    feature_cfg: dict | None = None,
    **overrides: Any,
) -> nn.Module:
    """Builds a registered model (or, with ``features_only``, the backbone of one, as timm does).

    Args:
        name: registered name, e.g. ``"mixer_s16_224"`` (see :func:`list_models`).
        num_classes: classifier size (0 for no head); the variant's default when None.
        in_chans: input channels; the variant's default when None.
        img_size: input side length; MLP models are built for exactly this size.
        device: where to build the parameters (``"meta"`` builds without memory, for counting).
        features_only: return a :class:`~mlpvision.models.features.FeatureExtractor` whose forward gives a list
            of feature maps (B, C_i, H / r_i, W / r_i), described by its ``feature_info``.
        out_indices: which features (timm's meaning: positions in ``model.feature_info``, negative from the end,
            or an int n for the last n); the family's default when None. Only with ``features_only``.
        feature_cfg: ``{"norm": bool, "output_fmt": "NCHW" | "NLC"}`` for the feature maps.
        **overrides: any other field of the family's config, e.g. ``drop_path_rate=0.1``.

    Returns:
        The model, with ``model_name``, ``config`` and ``pretrained_cfg`` attributes.
    """
    if (out_indices is not None or feature_cfg) and not features_only:
        raise ConfigError("out_indices and feature_cfg need features_only=True")
    given = {"num_classes": num_classes, "in_chans": in_chans, "img_size": img_size}
    overrides.update({k: v for k, v in given.items() if v is not None})
    spec = get_spec(name)
    cfg = resolve_config(name, **overrides)
    with torch.device(device) if device is not None else contextlib.nullcontext():
        model = spec.build(cfg)
    return wrap_features(model, out_indices, feature_cfg) if features_only else model
