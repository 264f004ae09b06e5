"""The configuration of a training run: every field is a command-line flag of ``mlpvision train`` (its comment is
the flag's help) and a key of a recipe file. Recipe values are checked against the fields' types and impossible
values refused with one clear error before anything is built; :meth:`TrainConfig.from_recipe` merges a recipe with
command-line overrides."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import io
import math
import tokenize
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from ..data import AugmentConfig
from ..errors import ConfigError
from ..runtime import native_bf16

__all__ = ["FieldDoc", "TrainConfig", "field_docs"]


class FieldDoc(NamedTuple):
    """A config field as a command line shows it."""

    name: str
    hint: Any  # the resolved type annotation
    default: Any
    help: str  # the field's comment in the class body


@functools.cache
def field_docs(cls: type) -> list[FieldDoc]:
    """The fields of dataclass ``cls`` with their types, defaults and the comments written beside them (a comment
    line right under a field continues its comment)."""
    comments: dict[str, str] = {}
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):  # no source shipped: fields without help
        source = ""
    current = None
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.NAME and tok.start[1] == 4 and tok.line[4:].split(":", 1)[0].strip().isidentifier():
            current = tok.string if ":" in tok.line and not tok.line.lstrip().startswith("def ") else None
        elif tok.type == tokenize.COMMENT and current is not None and tok.start[1] >= 4:
            text = tok.string.lstrip("#").strip()
            comments[current] = f"{comments[current]} {text}" if current in comments else text
    hints = typing.get_type_hints(cls)
    docs: list[FieldDoc] = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        docs.append(FieldDoc(f.name, hints[f.name], default, comments.get(f.name, "")))
    return docs


_TYPE_NAMES = {
    float: "a number",
    int: "a whole number",
    bool: "true or false",
    str: "a string",
    dict: "a mapping",
    list: "a list of strings",
}


def _options(hint: Any) -> tuple[Any, ...]:
    """The alternatives of a union type (``str | None`` -> (str, NoneType)), or ``(hint,)``."""
    return typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)


def _type_name(hint: Any) -> str:
    names = [_TYPE_NAMES.get(typing.get_origin(a) or a, str(a)) for a in _options(hint) if a is not type(None)]
    return " or ".join(names)


def _coerce(hint: Any, value: Any) -> Any:
    """``value`` as type ``hint`` (a recipe's YAML may give ``1e-3`` as a string, ``2`` for ``2.0``); raises
    ValueError when it is not one."""
    options = _options(hint)
    if value is None and type(None) in options:
        return None
    for option in options:
        origin = typing.get_origin(option) or option
        if origin is bool and isinstance(value, bool):
            return value
        if origin is int and not isinstance(value, bool):
            if isinstance(value, int):
                return value
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
                return int(value)
        if origin is float and not isinstance(value, bool):
            number = value
            if isinstance(value, str):
                try:
                    number = float(value)
                except ValueError:
                    continue
            if isinstance(number, int | float):
                if not math.isfinite(number):
                    raise ValueError(f"must be a finite number, got {value!r}")
                return float(number)
        if origin is str and isinstance(value, str):
            return value
        if origin is list and isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        if origin is dict and isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
            return dict(value)
    raise ValueError(f"expected {_type_name(hint)}, got {value!r}")


def _checked(cls: type, d: Mapping[str, Any], what: str) -> dict[str, Any]:
    """``d`` with every value coerced to its field's type; unknown keys and wrong types are one ConfigError."""
    if not isinstance(d, Mapping):
        raise ConfigError(f"{what} must be a mapping of option: value, got {d!r}")
    docs = {f.name: f for f in field_docs(cls)}
    unknown = sorted(set(d) - set(docs))
    if unknown:
        raise ConfigError(f"unknown {what}(s) {', '.join(map(str, unknown))}; valid: {', '.join(sorted(docs))}")
    out, bad = {}, []
    for key, value in d.items():
        try:
            if docs[key].hint is AugmentConfig:
                if not isinstance(value, AugmentConfig):
                    value = AugmentConfig(**_checked(AugmentConfig, value, "augmentation option"))
                out[key] = value
                continue
            out[key] = _coerce(docs[key].hint, value)
        except ConfigError:
            raise
        except ValueError as e:
            bad.append(f"{key}: {e}")
    if bad:
        raise ConfigError(f"invalid {what}(s): {'; '.join(bad)}")
    return out


@dataclass(frozen=True)
class TrainConfig:
    """A training run. Every field is a command-line flag (``--batch-size``) and a key of a recipe file."""

    model: str = "repmlp_fast_28"  # registered model name
    model_args: dict = field(default_factory=dict)  # overrides of the model config, e.g. {"drop_path_rate": 0.1}
    data: str = "fashion-mnist"  # fashion-mnist | cifar10 | cifar100 | imagefolder | synthetic
    data_dir: str | None = None  # folder of the data set (Fashion-MNIST: Debian's location by default)
    out: str = "runs/train"  # output folder
    epochs: int = 10  # passes over the training set
    max_steps: int = 0  # stop after this many optimizer steps, the schedule ending there (0: epochs x steps/epoch)
    batch_size: int = 128  # global batch per optimizer step (split over processes and accumulation steps)
    accum_steps: int = 1  # micro-batches per optimizer step
    optimizer: str = "adamw"  # adamw | sgd
    lr: float = 2e-3  # peak learning rate
    min_lr: float = 1e-5  # learning rate at the end of the cosine decay
    weight_decay: float = 0.05  # AdamW / SGD weight decay (not applied to biases and norm or scale parameters)
    momentum: float = 0.9  # SGD only
    warmup_epochs: float = 1.0  # linear warm-up from lr / 100
    label_smoothing: float = 0.1  # label smoothing of the cross-entropy (0: off)
    grad_clip: float = 0.0  # max gradient norm (0: off)
    ema_decay: float = 0.0  # decay of the weight EMA (0: off); the final model is the EMA when on
    ema_warmup: bool = False  # EMA decay min(ema_decay, (1 + n) / (10 + n)) at update n: early averages forget init
    ema_bn_images: int = 0  # recompute the EMA's BatchNorm statistics on this many training images before each
    # evaluation and for the saved models (0: keep the averaged statistics, which lag the averaged weights)
    amp: bool | None = None  # bfloat16 autocast; None: where the device runs it natively (runtime.native_bf16)
    channels_last: bool = False  # channels-last memory format for images and weights (convnets on GPU)
    aug: AugmentConfig = field(default_factory=lambda: AugmentConfig(crop_padding=2, hflip=0.5))  # augmentation
    val_size: int = 5000  # images held out of the training set for validation (0: none)
    train_subset: int = 0  # train on a seeded random subset of this many images (0: all)
    test_subset: int = 0  # report test figures on a fixed random subset of this many test images (0: all)
    workers: int = 0  # data-loading processes (0: load in the training process)
    seed: int = 0  # seed of everything random: split, initialisation, batch order, augmentation
    save_every_steps: int = 0  # also checkpoint every K optimizer steps (0: only at epoch ends)
    plots: bool = True  # write curves.png and confusion.png (off for many small runs, e.g. the lab's quick mode)
    time_limit_min: float = 0.0  # stop after this much training time, then evaluate (0: no limit)
    teacher: str | list[str] | None = None  # model file of a distillation teacher; a list: an ensemble (mean logits)
    distill: str = "none"  # none | hard | soft
    distill_alpha: float = 0.5  # weight of the distillation loss
    distill_tau: float = 1.0  # soft distillation temperature
    init: str | None = None  # model file to fine-tune from (head reset when classes differ)
    img_size: int | None = None  # train at this input size (from --init: resolution transfer)
    device: str | None = None  # cpu | cuda | cuda:1; auto-detected when None
    tensorboard: bool = False  # also log metrics to OUT/tensorboard (needs the tensorboard package)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """Builds a config from a (recipe) dict; an unknown key or a value of the wrong type is a
        :class:`ConfigError` naming the fields."""
        return cls(**_checked(cls, d, "training option"))

    @classmethod
    def from_recipe(cls, recipe: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None):
        """A recipe's config with ``overrides`` (command-line flags) applied on top.

        ``overrides["aug"]`` refines the recipe's augmentation (or the default one when the recipe has none)
        key by key, and ``overrides["model_args"]`` adds to the recipe's model arguments; any other override
        replaces the recipe's value.
        """
        recipe = dict(_checked(cls, recipe or {}, "training option"))
        overrides = dict(overrides or {})
        aug = dataclasses.asdict(recipe.pop("aug", None) or cls().aug)
        aug.update(overrides.pop("aug", None) or {})
        model_args = {**recipe.pop("model_args", {}), **(overrides.pop("model_args", None) or {})}
        return cls.from_dict({**recipe, **overrides, "aug": aug, "model_args": model_args})

    @property
    def teacher_files(self) -> list[str]:
        """The teacher's model files: none, one, or the members of an ensemble."""
        if not self.teacher:
            return []
        return [self.teacher] if isinstance(self.teacher, str) else list(self.teacher)

    def amp_on(self, device: torch.device | str) -> bool:
        """Whether this run autocasts to bfloat16 on ``device``: ``amp`` when set, else where it is native."""
        return self.amp if self.amp is not None else native_bf16(device)

    def validate(self) -> None:
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.max_steps >= 0, f"max_steps must be >= 0 (0: no limit), got {self.max_steps}"),
            (self.batch_size >= 1 and self.accum_steps >= 1, "batch size and accumulation steps must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (self.optimizer in ("adamw", "sgd"), f"optimizer must be adamw or sgd, got {self.optimizer!r}"),
            (self.distill in ("none", "hard", "soft"), f"distill must be none, hard or soft, got {self.distill!r}"),
            (self.distill == "none" or self.teacher, "distillation needs --teacher MODEL_FILE"),
            (0 <= self.distill_alpha <= 1, f"distill_alpha must be in [0, 1], got {self.distill_alpha}"),
            (self.distill_tau > 0, f"distill_tau must be > 0, got {self.distill_tau}"),
            (0 <= self.ema_decay < 1, "ema_decay must be in [0, 1)"),
            (self.ema_bn_images >= 0, f"ema_bn_images must be >= 0 (0: off), got {self.ema_bn_images}"),
            (self.ema_bn_images == 0 or self.ema_decay > 0, "ema_bn_images acts on the weight EMA: set ema_decay too"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
