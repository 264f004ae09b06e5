"""The lab's ``paper`` profile: the papers' own experiments at the papers' sizes and budgets, for a GPU cluster.

- On CIFAR-10 (``--data cifar10``): the RepMLP ablation (RepMLP paper, Table 1: the pure-MLP network and its
  variants B to E) and RepMLP against the Wide ConvNet, with the paper's widths (16-32-64 for RepMLP, 32-64-128
  for the Wide ConvNet) and recipe: 100 epochs, batch 128, pad-4 random crop and flip, cosine decay from 0.2 to 0
  (SGD, momentum 0.9), every training image, the whole test set.
- On an ImageNet-style folder (``--data imagefolder --data-dir DIR``, 224 px): MLP-Mixer S/16 against ResMLP-S12,
  and ResMLP-S12's Affine against LayerNorm, on the ResMLP paper's budget (400 epochs, batch 2048, cosine, 5
  warm-up epochs, label smoothing 0.1, RandAugment, mixup 0.8, CutMix 1.0, random erasing 0.25, stochastic depth
  0.05) with AdamW at DeiT's linearly scaled rate (5e-4 x batch / 512) in place of LAMB, which the library lacks.

Users bring the data; nothing is downloaded. :func:`gpu_hours` estimates the cost under a stated throughput
assumption (:data:`ASSUMPTION`): nothing here was measured on a GPU.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch

from ..errors import ConfigError
from ..io import write_json
from ..models import count, create_model
from ..runtime import machine_description
from .executors import Batch, Executor, LocalExecutor
from .spec import Comparison, Experiment, LabRun, Settings

__all__ = [
    "ASSUMPTION",
    "PAPER_DATA",
    "GpuAssumption",
    "gpu_hours",
    "paper_ledger",
    "paper_plan",
    "paper_settings",
    "run_paper",
]

SEEDS = (0, 1, 2)
CIFAR_TRAIN = 50_000
IMAGENET_TRAIN = 1_281_167  # ImageNet-1k's training images: the estimate's default for a folder not counted
CIFAR_RECIPE = {
    "epochs": 100,
    "batch_size": 128,
    "optimizer": "sgd",
    "lr": 0.2,
    "min_lr": 0.0,
    "momentum": 0.9,
    "weight_decay": 1e-4,  # the RepMLP paper's ImageNet value; its CIFAR text states none
    "warmup_epochs": 0.0,
    "label_smoothing": 0.0,
    "aug": {"crop_padding": 4, "hflip": 0.5},
    "val_size": 0,  # the paper trains on all 50 000 images and reports the test set
    "plots": False,
}
FOLDER_RECIPE = {
    "epochs": 400,
    "batch_size": 2048,
    "accum_steps": 8,  # micro-batches of 256 on one GPU
    "optimizer": "adamw",
    "lr": 5e-4 * 2048 / 512,
    "min_lr": 1e-5,
    "weight_decay": 0.05,
    "affine_decay": False,  # the ResMLP paper's code keeps Affine's 1-D scale and shift out of weight decay
    "warmup_epochs": 5.0,
    "label_smoothing": 0.1,
    "aug": {"hflip": 0.5, "auto_augment": "randaugment", "random_erasing": 0.25, "mixup": 0.8, "cutmix": 1.0},
    "val_size": 10_000,
    "img_size": 224,
    "workers": 8,
    "plots": False,
}
PAPER_DATA = ("cifar10", "imagefolder")


class GpuAssumption(NamedTuple):
    """What the estimate assumes of one GPU: a sustained arithmetic rate and an input-pipeline ceiling."""

    name: str
    peak_tflops: float  # dense bfloat16 peak
    utilisation: float  # share of the peak a training step sustains
    max_images_per_second: dict[str, float]  # the input pipeline's ceiling, by data set
    source: str

    @property
    def flops(self) -> float:
        return self.peak_tflops * 1e12 * self.utilisation

    def describe(self) -> str:
        ceilings = ", ".join(f"{k} {v:,.0f} img/s" for k, v in self.max_images_per_second.items())
        return (
            f"one {self.name} per run at {self.utilisation:.0%} of its {self.peak_tflops:g} TFLOP/s dense bfloat16 "
            f"peak ({self.source}); a training image costs 3 x 2 x the forward MACs; at most {ceilings} (input "
            "pipeline and per-step overheads); evaluation adds a third of a training pass over the validation and "
            "test images. An assumption, not a measurement: no GPU was used to make it"
        )


ASSUMPTION = GpuAssumption(
    "NVIDIA A100",
    312.0,
    0.25,
    {"cifar10": 10_000, "imagefolder": 2_500},
    "the peak from NVIDIA's A100 datasheet; the utilisation, the per-step overheads of small CIFAR models at batch "
    "128 and the JPEG-decoding ceiling with 8 loader processes are assumed, typical of mixed-precision vision "
    "training",
)


def paper_settings(data: str = "cifar10") -> Settings:
    """The profile's budgets as lab settings (every training image, the whole test set, three seeds)."""
    if data not in PAPER_DATA:
        raise ConfigError(f"the paper profile runs on {' or '.join(PAPER_DATA)}, not {data!r}")
    batch = CIFAR_RECIPE["batch_size"] if data == "cifar10" else FOLDER_RECIPE["batch_size"]
    epochs = CIFAR_RECIPE["epochs"] if data == "cifar10" else FOLDER_RECIPE["epochs"]
    return Settings(data=data, seeds=SEEDS, more_seeds=SEEDS, subset=0, val_size=0, batch_size=batch, epochs=epochs)


REPMLP_ROWS = {  # RepMLP paper Table 1 (CIFAR-10): row -> model
    "A) RepMLP pure MLP": "repmlp_pure_32",
    "B) without Local Perceptron": "repmlp_pure_nolp_32",
    "C) without Global Perceptron": "repmlp_pure_nogp_32",
    "D) FC3 replaced by a 9x9 conv": "repmlp_pure_fc3conv9_32",
    "E) RepMLP replaced by a 9x9 conv": "repmlp_pure_conv9_32",
    "Wide ConvNet": "wide_convnet_32",
}
FOLDER_ROWS = {  # 224 px, from scratch: row -> (model, model_args)
    "MLP-Mixer S/16": ("mixer_s16_224", {"drop_path_rate": 0.05}),
    "ResMLP-S12": ("resmlp_12_224", {"drop_path_rate": 0.05}),
    "ResMLP-S12, LayerNorm": ("resmlp_12_224", {"drop_path_rate": 0.05, "norm": "layernorm"}),
}


def _cifar_runs(label: str) -> list[LabRun]:
    return [
        LabRun(label=label, model=REPMLP_ROWS[label], seed=seed, data="cifar10", train=CIFAR_RECIPE) for seed in SEEDS
    ]


def _folder_runs(label: str) -> list[LabRun]:
    name, args = FOLDER_ROWS[label]
    return [
        LabRun(label=label, model=name, seed=seed, data="imagefolder", model_args=args, train=FOLDER_RECIPE)
        for seed in SEEDS
    ]


def _cifar_budget() -> str:
    return "100 epochs, batch 128, pad-4 crop and flip, SGD with cosine 0.2 -> 0, all 50 000 images, float32 or bf16"


def paper_plan(data: str | None = None) -> list[Experiment]:
    """The profile's experiments on ``data`` (``cifar10`` or ``imagefolder``; None: both, for the plan)."""
    if data is not None and data not in PAPER_DATA:
        raise ConfigError(f"the paper profile runs on {' or '.join(PAPER_DATA)}, not {data!r}")
    exps = []
    if data in (None, "cifar10"):
        ablation = [r for label in list(REPMLP_ROWS)[:5] for r in _cifar_runs(label)]
        a = "A) RepMLP pure MLP"
        exps.append(
            Experiment(
                "paper_repmlp_ablation",
                "RepMLP ablation at the paper's size (CIFAR-10)",
                "The Local and the Global Perceptron both matter; FC and conv are not interchangeable.",
                "A variant without a perceptron, or with conv in place of FC, as accurate as the full block.",
                "Table 1: A 91.11, B 82.64, C 89.61, D 87.64, E 87.29",
                ablation,
                _cifar_budget(),
                [Comparison(f"{a} against {b}", a, b) for b in list(REPMLP_ROWS)[1:5]],
            )
        )
        exps.append(
            Experiment(
                "paper_repmlp_vs_convnet",
                "Pure-MLP RepMLP against the Wide ConvNet at the paper's size (CIFAR-10)",
                "A pure MLP comes close to a wide ConvNet.",
                "RepMLP more than 1 point below the Wide ConvNet.",
                "Table 1: RepMLP 91.11, Wide ConvNet 91.99",
                _cifar_runs(a) + _cifar_runs("Wide ConvNet"),
                _cifar_budget(),
                [
                    Comparison(
                        "RepMLP within 1 point of the Wide ConvNet",
                        a,
                        "Wide ConvNet",
                        kind="noninferior",
                        margin=1.0,
                        reason="the paper's own gap (0.88 points) rounded up: 'comes close' means at most that",
                    )
                ],
            )
        )
    if data in (None, "imagefolder"):
        budget = "400 epochs at 224 px, batch 2048 (8 x 256), AdamW, cosine, the ResMLP paper's augmentation"
        exps.append(
            Experiment(
                "paper_mixer_vs_resmlp",
                "ResMLP-S12 against MLP-Mixer S/16 from scratch (ImageNet-style folder)",
                "Without extra data ResMLP-S12 (15 M parameters) is at least as accurate as Mixer-S/16 (18 M).",
                "Mixer-S/16 more accurate than ResMLP-S12.",
                "ResMLP paper: S12 76.6 on ImageNet-1k; Mixer paper: B/16 76.44 from scratch",
                _folder_runs("ResMLP-S12") + _folder_runs("MLP-Mixer S/16"),
                budget,
                [Comparison("ResMLP-S12 against Mixer-S/16", "ResMLP-S12", "MLP-Mixer S/16")],
            )
        )
        exps.append(
            Experiment(
                "paper_resmlp_norm",
                "ResMLP-S12: Affine against LayerNorm (ImageNet-style folder)",
                "The Affine layer, without batch statistics, trains as well as LayerNorm.",
                "LayerNorm more than 0.5 points more accurate.",
                "ResMLP paper ablation: Affine 77.8 against LayerNorm 77.7 (distilled S12)",
                _folder_runs("ResMLP-S12") + _folder_runs("ResMLP-S12, LayerNorm"),
                budget,
                [
                    Comparison(
                        "Affine within 0.5 points of LayerNorm",
                        "ResMLP-S12",
                        "ResMLP-S12, LayerNorm",
                        kind="noninferior",
                        margin=0.5,
                        reason="the paper's ablations move by tenths; half a point is a user-visible loss",
                    )
                ],
            )
        )
    return exps


@functools.cache
def _macs(model: str, args: tuple) -> int:
    """Forward MACs of one image, counted on the meta device (no memory, no compute)."""
    with torch.device("meta"):
        return count(create_model(model, **dict(args))).macs


def training_images(data: str, data_dir: str | None = None) -> int:
    """Training images of ``data``: CIFAR-10's 50 000; a folder's files under ``train/`` when given, else
    ImageNet-1k's count."""
    if data == "cifar10":
        return CIFAR_TRAIN
    train = Path(data_dir or "") / "train"
    if data_dir and train.is_dir():
        return sum(len(files) for _, _, files in os.walk(train))
    return IMAGENET_TRAIN


def gpu_hours(run: LabRun, images: int, assumption: GpuAssumption = ASSUMPTION) -> float:
    """Estimated GPU hours of ``run`` on ``images`` training images (see :meth:`GpuAssumption.describe`)."""
    epochs = int(run.train.get("epochs", 1))
    val = int(run.train.get("val_size", 0))
    test = 10_000 if run.data == "cifar10" else 50_000
    passes = epochs * (images - val) + (epochs * val + 2 * test) / 3
    per_image = 6 * _macs(run.model, tuple(sorted(dict(run.model_args).items())))
    rate = min(assumption.flops / per_image, assumption.max_images_per_second[run.data])
    return passes / rate / 3600


def paper_ledger(data: str | None = None, data_dir: str | None = None) -> list[dict]:
    """Per experiment of the profile: its runs and estimated GPU hours (a run shared by two experiments counts
    once, in the first)."""
    rows, seen = [], set()
    for exp in paper_plan(data):
        hours = 0.0
        for run in exp.runs:
            if run.key not in seen:
                seen.add(run.key)
                hours += gpu_hours(run, training_images(run.data, data_dir))
        rows.append({"experiment": exp.key, "data": exp.runs[0].data, "runs": len(exp.runs), "gpu_hours": hours})
    return rows


def run_paper(
    data: str,
    results: str | os.PathLike,
    runs: str | os.PathLike,
    data_dir: str | None = None,
    executor: Executor | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Experiment]:
    """Trains (or resumes) the profile's experiments on ``data`` with ``executor`` (in this process by default);
    one result file per run under ``results/runs``, as the lab writes them."""
    from .runner import Lab  # the runner builds on the plan; the profile only borrows its Lab

    if data not in PAPER_DATA:
        raise ConfigError(f"the paper profile runs on {' or '.join(PAPER_DATA)} (--data), not {data!r}")
    if data == "imagefolder" and not data_dir:
        raise ConfigError("the paper profile on imagefolder needs --data-dir: a folder with train/ and val/ classes")
    settings = paper_settings(data)
    exps = paper_plan(data)
    lab = Lab(settings, Path(results), Path(runs), data_dir)
    write_json(Path(results) / "meta.json", {"profile": "paper", "data": data, "machine": machine_description()})
    batches = [
        Batch(
            e.key, [(f"{e.key}: run {i + 1}/{len(e.runs)} {r.label} (seed {r.seed})", r) for i, r in enumerate(e.runs)]
        )
        for e in exps
    ]
    (executor or LocalExecutor()).run(lab, batches, progress)
    return exps
