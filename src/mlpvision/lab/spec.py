"""What a lab plan is made of: the budgets of a mode (:class:`Settings`), one training (:class:`LabRun`), one
experiment with its claim and verdict rule (:class:`Experiment`), and the data sets the lab runs on.

A run's key hashes what it trains (not its label), so two experiments that need the same training share it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..errors import ConfigError

__all__ = [
    "EVAL_KEYS",
    "LAB_DATA",
    "SHIFTS",
    "Experiment",
    "LabData",
    "LabRun",
    "Rows",
    "Settings",
    "check_data",
    "data_suffix",
]

Rows = dict[str, list[dict]]  # a table's label -> the result files of its seeds

SHIFTS = (0, 1, 2, 3, 4)  # translation probe: pixels
EVAL_KEYS = {"shift": "shift_top1", "train_acc": "train_top1"}  # LabRun.evals -> the result field each adds


@dataclass(frozen=True)
class Settings:
    """The budgets of one lab mode."""

    quick: bool = False
    data: str = "fashion-mnist"  # or "cifar10" / "cifar100" (32x32 models); the synthetic probes stay 28x28
    seeds: tuple[int, ...] = (0, 1)
    epochs: int = 3  # training budget of the accuracy tables
    overfit_epochs: int = 2  # images seen in the over-fitting study: this many epochs of the full training set
    probe_epochs: int = 5  # synthetic probes (12 000 training images)
    equal_time_min: float = 4.0  # per-model wall-clock budget of the families comparison
    timing_steps: tuple[int, int] = (5, 10)  # warm-up and timed training steps that size an equal-time run
    subset: int = 0  # training images (0: all but validation)
    val_size: int = 5000
    test_subset: int = 0
    batch_size: int = 128
    latency_batch: int = 64
    latency_repeats: int = 10
    shift_images: int = 2000  # test images used by the translation probe

    @classmethod
    def full(cls) -> Settings:
        return cls()

    @classmethod
    def tiny(cls) -> Settings:
        return cls(
            quick=True,
            seeds=(0,),
            epochs=1,
            overfit_epochs=1,
            probe_epochs=1,
            equal_time_min=0.01,
            timing_steps=(1, 2),
            subset=128,
            val_size=64,
            test_subset=128,
            batch_size=32,
            latency_batch=4,
            latency_repeats=2,
            shift_images=32,
        )


@dataclass(frozen=True)
class LabRun:
    """One training run: a model with config overrides, trained with the lab recipe plus ``train`` overrides."""

    label: str  # row label in its experiment's table
    model: str
    seed: int = 0
    data: str = "fashion-mnist"
    model_args: Mapping[str, Any] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)  # TrainConfig overrides
    teacher: LabRun | None = None  # distillation teacher (trained first)
    init: LabRun | None = None  # fine-tune from this run's model
    evals: tuple[str, ...] = ()  # extra measurements: "shift", "train_acc"
    equal_time_min: float = 0.0  # > 0: epochs chosen so training takes about this long

    @property
    def key(self) -> str:
        """Identifies the training (not the label): identical runs in two experiments are trained once."""
        spec = {
            "model": self.model,
            "seed": self.seed,
            "data": self.data,
            "model_args": dict(self.model_args),
            "train": dict(self.train),
            "teacher": self.teacher.key if self.teacher else None,
            "init": self.init.key if self.init else None,
            "equal_time_min": self.equal_time_min,
        }
        digest = hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:8]
        return f"{self.model}-{digest}-s{self.seed}"


@dataclass
class Experiment:
    key: str
    title: str
    claim: str  # what the papers claim, in one or two sentences
    runs: list[LabRun]
    budget: str  # the shared budget, in words
    latency: dict[str, tuple[str, dict]] = field(default_factory=dict)  # label -> (model, model_args)
    notes: str = ""
    caveat: str = ""  # likely reasons, shown when the claim does not reproduce
    verdict: Callable[[Rows], bool] | None = None  # whether the claim reproduced, once every run is done
    rule: str = ""  # the verdict's rule, in words
    chance: float | None = None  # a probe's chance-level accuracy (%)


class LabData(NamedTuple):
    title: str
    size: int  # image side in pixels: picks the `_28` or `_32` twin of every model
    chans: int


LAB_DATA = {  # the data sets the lab runs on
    "fashion-mnist": LabData("Fashion-MNIST", 28, 1),
    "cifar10": LabData("CIFAR-10", 32, 3),
    "cifar100": LabData("CIFAR-100", 32, 3),
}


def data_suffix(data: str) -> str:
    """Suffix of the lab's default folders, page and figures for ``data`` (none for Fashion-MNIST)."""
    return "" if data == "fashion-mnist" else f"-{data}"


def check_data(name: str) -> int:
    """The image size of lab data set ``name`` (a clear error for any other)."""
    if name not in LAB_DATA:
        raise ConfigError(f"the lab runs on {', '.join(LAB_DATA)}, not {name!r}")
    return LAB_DATA[name].size
