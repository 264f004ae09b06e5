"""The configuration of a training run: every field is a command-line flag of ``mlpvision train`` (its comment is
the flag's help) and a key of a recipe file. Recipe values are checked against the fields' types and impossible
values refused with one clear error before anything is built; :meth:`TrainConfig.from_recipe` merges a recipe with
command-line overrides."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from ..data import AugmentConfig
from ..errors import ConfigError, MlpVisionError
from ..fields import check_config, checked_fields, config_problems, option
from ..models import resolve_config
from ..runtime import checked_device, native_bf16

__all__ = ["RESUMABLE_CHANGES", "TrainConfig"]

# what may differ when a run is resumed: where files are, how data is loaded, how often and how long to save and
# train, and how the same arithmetic is executed (compile); everything else changes the arithmetic of the
# remaining steps, so a resumed run would not be the run
RESUMABLE_CHANGES = frozenset(
    {"out", "data_dir", "workers", "time_limit_min", "plots", "tensorboard", "save_every_steps", "compile"}
)
# the validation split when --val-size is not given: a tenth of a --train-subset, within these bounds (a quick
# run of a few hundred images validates on a few hundred, not on 5000)
AUTO_VAL_MIN, AUTO_VAL_MAX = 200, 5000
_NESTED = {"aug": "augmentation option"}


@dataclass(frozen=True)
class TrainConfig:
    """A training run. Every field is a command-line flag (``--batch-size``) and a key of a recipe file."""

    task: str = option("classify", choices=("classify", "segment"))  # classify (a label per image) | segment (a
    # label per pixel: seg_ models, mask data)
    model: str = "repmlp_fast_28"  # registered model name
    model_args: dict = field(default_factory=dict)  # overrides of the model config, e.g. --model-arg drop_path_rate=0.1
    data: str = "fashion-mnist"  # data set: fashion-mnist, cifar10, cifar100, imagefolder (class folders in
    # --data-dir) or synthetic; to segment: fashion-scenes (garments on 64x64 canvases) or segfolder (images and
    # masks in --data-dir); an unknown name lists every registered one
    data_dir: str | None = None  # folder of the data set (Fashion-MNIST: Debian's location by default)
    out: str = "runs/train"  # output folder
    epochs: int = option(10, ge=1, le=100_000)  # passes over the training set
    max_steps: int = option(0, ge=0, le=10**12)  # stop after this many optimizer steps, the schedule ending there (0:
    # epochs x steps/epoch)
    batch_size: int = option(128, ge=1, le=2**20)  # global batch per optimizer step (split over processes and
    # accumulation steps)
    accum_steps: int = option(1, ge=1, le=2**16)  # micro-batches per optimizer step
    optimizer: str = option("adamw", choices=("adamw", "sgd"))  # the optimizer
    lr: float = option(2e-3, gt=0, le=100)  # peak learning rate
    min_lr: float = option(1e-5, ge=0, le=100)  # learning rate at the end of the cosine decay
    weight_decay: float = option(0.05, ge=0, le=100)  # AdamW / SGD weight decay (not applied to biases and norm or
    # scale parameters)
    affine_decay: bool = True  # weight decay on ResMLP's Affine scale and shift too: (1, 1, C) tensors, as in
    # timm, whose default parameter groups decay them; the ResMLP paper's code does not (false)
    momentum: float = option(0.9, ge=0, lt=1)  # SGD only
    warmup_epochs: float = option(1.0, ge=0, le=100_000)  # linear warm-up from lr / 100
    label_smoothing: float = option(0.1, ge=0, lt=1)  # label smoothing of the cross-entropy (0: off)
    grad_clip: float = option(0.0, ge=0)  # max gradient norm (0: off)
    ema_decay: float = option(0.0, ge=0, lt=1)  # decay of the weight EMA (0: off); the final model is the EMA when on
    ema_warmup: bool = False  # EMA decay min(ema_decay, (1 + n) / (10 + n)) at update n: early averages forget init
    ema_bn_images: int = option(0, ge=0, le=10**9)  # recompute the EMA's BatchNorm statistics on this many training
    # images before each
    # evaluation and for the saved models (0: keep the averaged statistics, which lag the averaged weights)
    amp: bool | None = None  # bfloat16 autocast (none: on where the device runs bfloat16 natively: a CUDA GPU
    # with bfloat16, a CPU with AMX or AVX-512-BF16)
    channels_last: bool = False  # channels-last memory format for images and weights (convnets on GPU)
    aug: AugmentConfig = field(default_factory=lambda: AugmentConfig(crop_padding=2, hflip=0.5))  # augmentation
    val_size: int | None = option(None, ge=0, le=10**9)  # images held out of the training set for validation (0:
    # none; none: 5000, or with --train-subset a tenth of it, at least 200 and at most 5000)
    val_every: int = option(
        1, ge=1, le=100_000
    )  # validate (and keep the best model) every K epochs and after the last one
    train_subset: int = option(0, ge=0, le=10**9)  # train on a seeded random subset of this many images (0: all)
    test_subset: int = option(0, ge=0, le=10**9)  # report test figures on a fixed random subset of this many test
    # images (0: all)
    workers: int = option(0, ge=0, le=256)  # data-loading processes (0: load in the training process)
    seed: int = option(0, ge=0, le=2**32 - 1)  # seed of everything random: split, initialisation, batch order,
    # augmentation
    save_every_steps: int = option(0, ge=0)  # also checkpoint every K optimizer steps (0: only at epoch ends)
    plots: bool = True  # write curves.png and confusion.png (off for many small runs, e.g. the lab's quick mode)
    time_limit_min: float = option(0.0, ge=0)  # stop after this much training time, then evaluate (0: no limit)
    teacher: str | list[str] | None = option(None, max_items=64)  # model file of a distillation teacher; a list: an
    # ensemble (mean logits)
    distill: str = option("none", choices=("none", "hard", "soft"))  # distillation from --teacher: hard (its
    # predicted class) or soft (its probabilities at temperature distill_tau)
    distill_alpha: float = option(0.5, ge=0, le=1)  # weight of the distillation loss
    distill_tau: float = option(1.0, gt=0, le=1000)  # soft distillation temperature
    init: str | None = None  # model file or plain weights of --model to fine-tune (new head when classes differ)
    img_size: int | None = option(None, ge=1, le=4096)  # train at this input size (from --init: resolution
    # transfer)
    device: str | None = None  # cpu, cuda or cuda:N (none: a GPU when CUDA is available, else the CPU)
    tensorboard: bool = False  # also log metrics to OUT/tensorboard (needs the tensorboard package)
    compile: bool = False  # compile the training step's model with torch.compile (same results up to rounding;
    # the first steps are slower while it compiles)

    def __post_init__(self) -> None:
        check_config(self, "training option(s)")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """Builds a config from a (recipe) dict; an unknown key or a value of the wrong type is a
        :class:`ConfigError` naming the fields."""
        return cls(**checked_fields(cls, d, "training option", _NESTED))

    @classmethod
    def from_recipe(cls, recipe: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None):
        """A recipe's config with ``overrides`` (command-line flags) applied on top.

        ``overrides["aug"]`` refines the recipe's augmentation (or the default one when the recipe has none)
        key by key, and ``overrides["model_args"]`` adds to the recipe's model arguments; any other override
        replaces the recipe's value.
        """
        recipe = dict(checked_fields(cls, recipe or {}, "training option", _NESTED))
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

    @property
    def resolved_val_size(self) -> int:
        """The validation images this run holds out: ``val_size`` when set, else 5000, or a tenth of
        ``train_subset`` clipped to [AUTO_VAL_MIN, AUTO_VAL_MAX] when training on a subset."""
        if self.val_size is not None:
            return self.val_size
        if self.train_subset:
            return min(AUTO_VAL_MAX, max(AUTO_VAL_MIN, self.train_subset // 10))
        return AUTO_VAL_MAX

    def amp_on(self, device: torch.device | str) -> bool:
        """Whether this run autocasts to bfloat16 on ``device``: ``amp`` when set, else where it is native."""
        return self.amp if self.amp is not None else native_bf16(device)

    def resume_conflicts(self, saved: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
        """The fields whose value differs from ``saved`` (a checkpoint's config) and may not change on resume, each
        with (saved value, this config's value)."""
        now = json.loads(json.dumps(self.as_dict()))  # tuples as lists, as the checkpoint stores them
        # a field added since the checkpoint was written trained at its default, which keeps the earlier behaviour
        saved = _with_defaults(saved, json.loads(json.dumps(type(self)().as_dict())))
        fixed = sorted((now.keys() | saved.keys()) - RESUMABLE_CHANGES)
        return {k: (saved.get(k), now.get(k)) for k in fixed if now.get(k) != saved.get(k)}

    def validate(self) -> None:
        """Every problem of this config at once, as one :class:`ConfigError`: values out of their fields' ranges
        (checked on construction too) and combinations that cannot run."""
        checks = [
            (self.min_lr <= self.lr, f"min_lr ({self.min_lr:g}) must not exceed lr ({self.lr:g})"),
            (self.distill == "none" or self.teacher, "distillation needs --teacher MODEL_FILE"),
            (self.ema_bn_images == 0 or self.ema_decay > 0, "ema_bn_images acts on the weight EMA: set ema_decay too"),
        ]
        if self.task == "segment":
            a = self.aug
            unsupported = [
                name
                for name, on in (
                    ("auto_augment", a.auto_augment != "none"),
                    ("random_erasing", a.random_erasing > 0),
                    ("mixup", a.mixup > 0),
                    ("cutmix", a.cutmix > 0),
                    ("distill", self.distill != "none"),
                )
                if on
            ]
            checks.append(
                (
                    not unsupported,
                    f"--task segment augments with crop_padding and hflip (image and mask alike) only; turn off "
                    f"{', '.join(unsupported)}",
                )
            )
        problems = config_problems(self) + [message for ok, message in checks if not ok]
        if self.device:
            try:
                checked_device(self.device)
            except MlpVisionError as e:
                problems.append(str(e))
        try:  # the model and its options, checked with the rest before anything is built
            resolve_config(self.model, **self.model_args)
        except MlpVisionError as e:
            problems.append(f"model: {e}")
        if problems:
            raise ConfigError(f"invalid training option(s): {'; '.join(problems)}")


def _with_defaults(saved: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``saved`` with every key it lacks taken from ``defaults``, in nested sections (``aug``) too."""
    out = {**defaults, **saved}
    for k, v in saved.items():
        if isinstance(v, Mapping) and isinstance(defaults.get(k), Mapping):
            out[k] = _with_defaults(v, defaults[k])
    return out
