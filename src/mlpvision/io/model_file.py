"""Model files: weights plus the model name and resolved config in the safetensors metadata.

A model file needs no other information to be rebuilt: ``load_checkpoint(path)`` reads the name and config,
builds the model with :func:`~mlpvision.models.create_model` and loads the weights strictly. Plain weights (a
state dict without our metadata, timm's included) load with ``create_model(name, pretrained=path)``.

A model file is untrusted input, read in this order so that a small crafted file costs nothing: the header (size
capped, every byte range inside the file); the name and config (length capped, each value in its field's range);
the model the config describes, built on the meta device (no memory) while the registration of its parameters is
counted, so that a config asking for more parameters than the file holds, or than the parameter budget
(``limits.max_params``, ``--max-params``) allows, stops the build early; then the name, dtype and shape of every
tensor are compared with that model's; only then is the model built and the weights read, each checked finite.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as torch_module

from .._version import __version__
from ..errors import CheckpointError, ConfigError, LimitError, MlpVisionError, brief
from ..limits import current as current_limits
from ..models import create_model as build_model
from ..models import get_spec
from ..models.features import wrap_features
from ..models.pretrained_cfg import fit_channels
from .files import parse_json
from .onnx_file import read_onnx_metadata
from .weights import TensorSpec, check_fits, load_into, read_header, read_metadata, read_safetensors, write_safetensors

__all__ = [
    "CONFIG_KEY",
    "DATA_KEY",
    "MODEL_NAME_KEY",
    "PRETRAINED_CFG_KEY",
    "adapt_input_channels",
    "create_model",
    "data_metadata",
    "expected_tensors",
    "file_metadata",
    "load_checkpoint",
    "load_pretrained",
    "model_metadata",
    "save_model",
    "saved_data",
    "saved_pretrained_cfg",
    "stored_model",
]

MODEL_NAME_KEY = "mlpvision.model"  # the registered name of the model whose weights a file holds
CONFIG_KEY = "mlpvision.config"
DATA_KEY = "mlpvision.data"  # the training data set's name, classes and normalisation
PRETRAINED_CFG_KEY = "mlpvision.pretrained_cfg"  # how the weights expect images prepared (converted weights)

log = logging.getLogger(__name__)


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
    data = parse_json(file_metadata(path).get(DATA_KEY, "{}"), f"{path}: the stored data description", CheckpointError)
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: the data description stored in the file is not a mapping")
    mean, std = data.get("mean", []), data.get("std", [])
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in [*mean, *std])
    if not (isinstance(mean, list) and isinstance(std, list) and numbers and len(mean) == len(std)):
        raise CheckpointError(f"{path}: the stored normalisation is not two equal-length lists of numbers")
    if any(v <= 0 for v in std):
        raise CheckpointError(f"{path}: the stored normalisation has a standard deviation <= 0 ({std})")
    classes = data.get("classes", [])
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise CheckpointError(f"{path}: the stored class names are not a list of strings")
    if not isinstance(data.get("name", ""), str | None):
        raise CheckpointError(f"{path}: the stored data set name is not a string ({brief(data['name'])})")
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


MAX_NAME_CHARS = 200  # a registered model name is a few dozen characters


def _config_overrides(path: str | os.PathLike, name: str, config_json: str) -> dict[str, Any]:
    saved = parse_json(config_json, f"{path}: the config stored in the file", CheckpointError)
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path}: the config stored in the file is not a mapping of option: value")
    return saved  # create_model checks each value against the config's field types and ranges


def stored_model(path: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """The registered name and config overrides a model file records, checked (an unknown name is an
    :class:`~mlpvision.errors.UnknownModelError`)."""
    metadata = read_metadata(path)
    name = metadata.get(MODEL_NAME_KEY)
    if name is None:
        raise CheckpointError(
            f"{path} has no model name in its metadata; load plain weights with create_model(NAME, pretrained=PATH)"
        )
    if len(name) > MAX_NAME_CHARS:
        raise CheckpointError(f"{path}: its model name is {len(name)} characters long, not a registered name")
    get_spec(name)  # an unknown model is an UnknownModelError, as create_model gives it
    return name, _config_overrides(path, name, metadata.get(CONFIG_KEY, "{}"))


class _Budget(Exception):
    """Raised inside a meta-device build that registers more than it may."""


@contextlib.contextmanager
def _counting_registrations(max_tensors: int, max_numel: int) -> Iterator[None]:
    """Counts every parameter and buffer registered in the block; exceeding a bound stops the build at once."""
    seen = {"tensors": 0, "numel": 0}

    def count(module, name, tensor):
        if tensor is not None:
            seen["tensors"] += 1
            seen["numel"] += tensor.numel()
            if seen["tensors"] > max_tensors or seen["numel"] > max_numel:
                raise _Budget(seen["numel"])

    hooks = [
        torch_module.register_module_parameter_registration_hook(count),
        torch_module.register_module_buffer_registration_hook(count),
    ]
    try:
        yield
    finally:
        for h in hooks:
            h.remove()


# a build may register this many tensors per tensor of the model it returns: a deploy form is built as the train
# form, whose BatchNorms (five tensors each) and branches are then fused away (a ResNet-50's deploy build registers
# four times its 108 tensors); tests/test_checkpoint.py checks every registered model against it
BUILD_TENSORS_PER_KEPT = 6


def expected_tensors(
    path: str | os.PathLike,
    name: str,
    overrides: dict[str, Any],
    specs: dict[str, TensorSpec],
    max_params: int | None = None,
) -> dict[str, TensorSpec]:
    """The state dict (name -> dtype, shape) of the model a file's config describes, computed on the meta device
    without allocating it. The build stops as soon as the model registers more tensors or elements than the file
    could hold (:data:`BUILD_TENSORS_PER_KEPT` times its count, for modules a build makes and drops; twice its
    elements) or more than ``max_params``."""
    budget = max_params or current_limits().max_params
    in_file = sum(math.prod(s.shape) for s in specs.values())
    try:
        with _counting_registrations(BUILD_TENSORS_PER_KEPT * len(specs) + 64, min(budget, 2 * in_file + 1_000_000)):
            meta = build_model(name, device="meta", **overrides)
    except _Budget as e:
        if e.args[0] > budget:
            raise LimitError(
                f"{path}: its stored config describes a model of more than {budget} parameters, the limit; pass "
                "--max-params N (or limits.set_limits(max_params=N)) to load a model that large"
            ) from None
        raise CheckpointError(f"{path}: its stored config describes a model larger than the weights it holds") from None
    except (MlpVisionError, ValueError, TypeError, RuntimeError, ZeroDivisionError, IndexError) as e:
        raise CheckpointError(f"{path}: cannot rebuild {name} from its stored config: {e}") from None
    params = sum(p.numel() for p in meta.parameters())
    if params > budget:
        raise LimitError(
            f"{path}: {name} has {params} parameters, more than the limit of {budget}; pass --max-params N to load it"
        )
    return {k: TensorSpec(v.dtype, tuple(v.shape)) for k, v in meta.state_dict().items()}


def load_checkpoint(
    path: str | os.PathLike, device: str | torch.device | None = None, max_params: int | None = None
) -> nn.Module:
    """Rebuilds a model saved by :func:`save_model` (or by training) and loads its weights strictly.

    Everything is checked before the model is built or a weight read (see the module's docstring).

    Args:
        path: the model file.
        device: where to build the model.
        max_params: the parameter budget (default: ``limits.max_params``).

    Raises:
        CheckpointError: the file is missing, not safetensors, lacks the model metadata, or does not fit.
        LimitError: the model it describes is larger than the parameter budget.
    """
    specs, _ = read_header(path)
    name, overrides = stored_model(path)
    check_fits(expected_tensors(path, name, overrides, specs, max_params), specs, f"weights in {path}", name)
    try:
        # on the meta device: no memory and no initialisation (an orthogonal init of a large FC costs seconds),
        # as every tensor comes from the file
        model = build_model(name, device="meta", **overrides)
    except (MlpVisionError, ValueError, TypeError, RuntimeError, ZeroDivisionError) as e:  # a crafted config
        raise CheckpointError(f"{path}: cannot rebuild {name} from its stored config: {e}") from None
    tensors, _ = read_safetensors(path)
    own = model.state_dict()  # the dtypes the model is built with: a float16 file loads into float32, as copied
    tensors = {
        k: v.to(own[k].dtype) if k in own and v.is_floating_point() and own[k].is_floating_point() else v
        for k, v in tensors.items()
    }
    load_into(model, tensors, source=f"weights in {path}", assign=True)
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):  # a tensor the file does not hold
        model = build_model(name, **overrides)
        load_into(model, tensors, source=f"weights in {path}")
    return model.to(device).eval() if device is not None else model.eval()


def saved_pretrained_cfg(path: str | os.PathLike) -> dict:
    """The ``pretrained_cfg`` a model file records ({} when it records none, as files trained here)."""
    try:
        cfg = json.loads(file_metadata(path).get(PRETRAINED_CFG_KEY, "{}"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: the pretrained_cfg stored in the file is not valid JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path}: the pretrained_cfg stored in the file is not a mapping")
    return cfg


def _first_conv_key(model: nn.Module, own: dict[str, torch.Tensor]) -> str | None:
    """The state-dict key of the weight that reads the input channels (the stem), train or deploy form."""
    named = getattr(model, "pretrained_cfg", {}).get("first_conv", "") + ".weight"
    if named in own:
        return named
    return next((k for k, v in own.items() if k.endswith("weight") and v.dim() == 4), None)


def adapt_input_channels(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """A first-layer weight (O, C, k, k) trained on C channels, adapted to ``in_chans`` (as timm does).

    One channel: the sum over the C input channels (a grey image seen as C equal channels gives the same
    response). More channels: the C channels repeated cyclically, scaled by C / in_chans so the response to an
    input with equal channels keeps its size.
    """
    c = weight.shape[1]
    if in_chans == c:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    reps = -(-in_chans // c)
    return weight.repeat(1, reps, *([1] * (weight.dim() - 2)))[:, :in_chans] * (c / in_chans)


def load_pretrained(model: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> list[str]:
    """Loads weights as timm's ``pretrained=FILE`` does: strictly, except that a classifier of another size is
    skipped (the model keeps its new zero-initialised head) and a stem trained on other input channels is adapted
    (:func:`adapt_input_channels`).

    Returns:
        The keys of the file that were skipped or adapted (also logged).

    Raises:
        CheckpointError: any other missing, unexpected or mis-shaped key.
    """
    own = model.state_dict()
    tensors = dict(tensors)
    classifier = getattr(model, "pretrained_cfg", {}).get("classifier", getattr(model, "head_name", "head"))
    skipped = []
    for key in [k for k in tensors if k.split(".")[0] == classifier]:
        if key not in own or own[key].shape != tensors[key].shape:
            skipped.append(key)
            tensors.pop(key)
    adapted = []
    stem = _first_conv_key(model, own)
    if stem is not None and stem in tensors and tensors[stem].shape != own[stem].shape:
        w = tensors[stem]
        if w.dim() == own[stem].dim() and w.shape[0] == own[stem].shape[0] and w.shape[2:] == own[stem].shape[2:]:
            tensors[stem] = adapt_input_channels(w, own[stem].shape[1]).to(w.dtype)
            adapted.append(stem)
    missing_head = [k for k in own if k not in tensors and k.split(".")[0] == classifier]
    if skipped:
        log.warning(
            "%s: classifier %s of another size skipped (%s); the model's new head (%d classes) starts from zero",
            source,
            classifier,
            ", ".join(skipped),
            getattr(model, "num_classes", 0),
        )
    if adapted:
        log.warning("%s: %s adapted to %d input channels", source, ", ".join(adapted), own[adapted[0]].shape[1])
    for key in missing_head:
        tensors[key] = own[key]
    load_into(model, tensors, source=source)
    return skipped + adapted


def create_model(name: str, *args: Any, pretrained: bool | str | os.PathLike | None = None, **kwargs: Any) -> nn.Module:
    """Builds a registered model and loads local weights into it, with timm's ``pretrained`` semantics.

    Args:
        name: registered name, e.g. ``"mixer_s16_224"`` (see :func:`~mlpvision.list_models`).
        *args, **kwargs: what :func:`mlpvision.models.create_model` takes: ``num_classes``, ``in_chans``,
            ``img_size``, ``device``, ``features_only``, ``out_indices`` and any field of the family's config
            (e.g. ``drop_path_rate=0.1``).
        pretrained: path of a local safetensors file (nothing is downloaded; ``mlpvision convert`` turns the papers'
            checkpoints into one). Loaded strictly, except that a classifier of another size is skipped and
            re-initialised (another ``num_classes``, or 0 for none) and a stem trained on other input channels is
            adapted (another ``in_chans``); what was skipped is logged. A file of another model is refused.
            ``True`` is refused with a message: there is no download.

    Returns:
        The model, with ``model_name``, ``config`` and ``pretrained_cfg`` attributes (or, with
        ``features_only``, its feature extractor).
    """
    if pretrained is True:
        raise ConfigError(
            "pretrained=True would download weights, and mlpvision never downloads: weights are local files. "
            "Pass pretrained=PATH of a safetensors file (`mlpvision convert` turns the papers' checkpoints into one)"
        )
    if pretrained is False or pretrained is None:
        return build_model(name, *args, **kwargs)
    features_only = kwargs.pop("features_only", False)
    out_indices, feature_cfg = kwargs.pop("out_indices", None), kwargs.pop("feature_cfg", None)
    if (out_indices is not None or feature_cfg) and not features_only:
        raise ConfigError("out_indices and feature_cfg need features_only=True")
    model = build_model(name, *args, **kwargs)
    tensors, metadata = read_safetensors(pretrained)
    saved_name = metadata.get(MODEL_NAME_KEY)
    if saved_name is not None and saved_name != name:
        raise CheckpointError(f"{pretrained} holds weights of {saved_name}, not {name}")
    load_pretrained(model, tensors, source=f"weights in {pretrained}")
    saved_cfg = saved_pretrained_cfg(pretrained)
    if saved_cfg:  # how the weights expect images, as recorded by `mlpvision convert`; the model's own sizes win
        keep = ("input_size", "num_classes", "classifier", "first_conv", "fixed_input_size")
        merged = {**model.pretrained_cfg, **{k: v for k, v in saved_cfg.items() if k not in keep}}
        for k in ("mean", "std"):
            merged[k] = fit_channels(tuple(merged[k]), model.pretrained_cfg["input_size"][0])
        model.pretrained_cfg = merged
    return wrap_features(model, out_indices, feature_cfg) if features_only else model
