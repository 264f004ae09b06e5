"""The inductive-bias lab's runner: trains what the plan needs, measures it, and keeps the ledger.

``mlpvision lab`` first runs the tuning protocol (:mod:`mlpvision.lab.tuning`), then trains every run of every
experiment at its family's chosen rate (skipping runs whose result file exists, resuming an interrupted one from its
checkpoint), measures what each needs (test accuracy, accuracy on moved objects, the expanded model before
fine-tuning, deploy-form latency timed side by side), and writes one JSON file per run under ``results/lab/``; the
report is generated from those files alone. ``--quick`` runs the same pipeline on tiny budgets (the tests do).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import statistics
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data import load_split, shift_images
from ..deploy import Candidate, inference_call, measure
from ..errors import ConfigError
from ..io import load_checkpoint, write_json
from ..models import count, create_model
from ..reparam import reparameterize
from ..runtime import machine_description
from ..train import TrainConfig, TrainingError, build_data, expand_token_mixing, train
from .executors import Batch, Executor, LocalExecutor
from .plan import needed_families, plan, plan_context
from .spec import (
    EVAL_KEYS,
    GAP_IMAGES,
    SEG_SHIFT,
    SHIFTS,
    Experiment,
    LabRun,
    Settings,
    current_latency,
    latency_config,
    read_latency,
    read_result,
)

__all__ = ["Lab", "latency_only", "run_lab", "selected"]

log = logging.getLogger(__name__)


class Lab:
    """Runs a plan: trains missing runs, measures, writes results; everything under ``results`` and ``runs``."""

    def __init__(self, settings: Settings, results: Path, runs: Path, data_dir: str | None = None) -> None:
        self.s, self.results, self.runs, self.data_dir = settings, Path(results), Path(runs), data_dir

    def result_path(self, run: LabRun) -> Path:
        return self.results / "runs" / f"{run.key}.json"

    def model_path(self, run: LabRun) -> Path:
        return self.runs / run.key / "model.safetensors"

    def _config(self, run: LabRun) -> dict:
        return {
            "model": run.model,
            "data": run.data,
            "seed": run.seed,
            "model_args": dict(run.model_args),
            "out": str(self.runs / run.key),
            "data_dir": self.data_dir,
            **dict(run.train),
        }

    def ensure(self, run: LabRun, need_model: bool = False) -> dict:
        """The result of ``run``, training it (and its teacher / init run) first when needed.

        A finished run is skipped; an interrupted one resumes from its checkpoint. ``need_model``: the model file
        must exist too (a teacher or a fine-tuning start), so a run whose files were deleted is redone.
        """
        path = self.result_path(run)
        has_model = self.model_path(run).is_file()
        if path.is_file():
            result = read_result(path)
            if self._complete(run, result, has_model, need_model):
                return result
            if has_model:  # trained for another experiment that did not need these measurements
                self._measure(run, _load(self.model_path(run)), result)
                write_json(path, result)
                return result
        return self._train(run)

    def finished(self, run: LabRun, need_model: bool = False) -> bool:
        """Whether ``ensure(run, need_model)`` would return the result file as it is."""
        path = self.result_path(run)
        if not path.is_file():
            return False
        return self._complete(run, read_result(path), self.model_path(run).is_file(), need_model)

    @staticmethod
    def _complete(run: LabRun, result: dict, has_model: bool, need_model: bool) -> bool:
        missing = [e for e in run.evals if EVAL_KEYS[e] not in result]
        return not missing and (has_model or not need_model or bool(result.get("diverged")))

    def _train(self, run: LabRun) -> dict:
        cfg = self._config(run)
        if run.teacher is not None:
            self.ensure(run.teacher, need_model=True)
            cfg["teacher"] = str(self.model_path(run.teacher))
        if run.init is not None:
            self.ensure(run.init, need_model=True)
            cfg["init"] = str(self.model_path(run.init))
        log.info("lab: training %s (%s)", run.key, run.label)
        state = self.runs / run.key / "last.safetensors"
        try:
            # an interrupted run resumes from its training state; a finished run whose state was dropped (below)
            # and whose result is gone trains again from the start
            summary = train(TrainConfig.from_dict(cfg), resume=True, overwrite=not state.is_file())
        except TrainingError as e:  # a learning rate too high for the model: a result, not a failure
            result = self._diverged(run, cfg, str(e))
            write_json(self.result_path(run), result)
            state.unlink(missing_ok=True)  # its last good step: resuming it would only diverge again
            return result
        model = _load(self.model_path(run))
        train_form, deploy_form = count(model), count(reparameterize(model.eval()))  # each a forward pass
        result = {
            **self._identity(run, cfg),
            "summary": self._portable(summary),
            "num_classes": model.num_classes,
            "params": train_form.params,
            "macs": train_form.macs,
            "deploy_params": deploy_form.params,
            "deploy_macs": deploy_form.macs,
            "history": self._history(run),
        }
        self._measure(run, model, result)
        write_json(self.result_path(run), result)
        # the training state (weights, optimizer moments, schedule) only serves to resume an unfinished run; the
        # model files stay for the measurements, teachers and fine-tuning starts (a RepMLP's state is three times
        # its model file: the whole lab would keep tens of GB of it)
        state.unlink(missing_ok=True)
        return result

    def _identity(self, run: LabRun, cfg: dict) -> dict:
        amp = json.loads((self.runs / run.key / "config.json").read_text())["amp"]  # as train() resolved it
        return {
            "key": run.key,
            "label": run.label,
            "model": run.model,
            "seed": run.seed,
            "data": run.data,
            "model_args": dict(run.model_args),
            "train_config": self._portable({k: v for k, v in cfg.items() if k != "data_dir"}),
            "machine": machine_description(),
            "precision": "bfloat16 autocast" if amp else "float32",
        }

    def _history(self, run: LabRun) -> list[dict]:
        path = self.runs / run.key / "metrics.json"
        history = json.loads(path.read_text()) if path.is_file() else []
        keys = ("epoch", "epoch_seconds", "train_top1", "val_top1", "train_pixel_acc", "val_miou")
        return [{k: h[k] for k in keys if k in h} for h in history]

    def _diverged(self, run: LabRun, cfg: dict, message: str) -> dict:
        """The result of a run whose loss became NaN: chance accuracy, the epochs it did, and the message."""
        info = load_split(run.data, "test", self.data_dir)[1]
        shape = {"num_classes": info.num_classes, "in_chans": info.in_chans, "img_size": info.img_size}
        model = create_model(run.model, **{**shape, **dict(run.model_args)})
        deploy = reparameterize(model.eval())
        chance = 100.0 / info.num_classes
        log.warning("lab: %s diverged: %s", run.label, message)
        return {
            **self._identity(run, cfg),
            "summary": {"test_top1_final": chance, "train_seconds": 0.0, "steps": None}
            | ({"test_miou_final": 0.0} if cfg.get("task") == "segment" else {}),
            "num_classes": info.num_classes,
            "diverged": message,
            "params": count(model).params,
            "macs": count(model).macs,
            "deploy_params": count(deploy).params,
            "deploy_macs": count(deploy).macs,
            "history": self._history(run),
            **({"shift_top1": {str(k): chance for k in SHIFTS}} if "shift" in run.evals else {}),
        }

    def _portable(self, obj: Any) -> Any:
        """``obj`` with every path inside the runs folder made relative to it: results name no machine's folders."""
        if isinstance(obj, dict):
            return {k: self._portable(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self._portable(v) for v in obj]
        if isinstance(obj, str) and Path(obj).is_relative_to(self.runs):
            return Path(obj).relative_to(self.runs).as_posix()
        return obj

    def _measure(self, run: LabRun, model, result: dict) -> None:
        """Adds the run's extra measurements (see ``LabRun.evals``) to ``result``."""
        if "shift" in run.evals:
            result["shift_top1"] = self._shift_accuracy(model, run)
        if "train_acc" in run.evals:
            result["train_top1"] = self._train_accuracy(model, run)
        if "expanded" in run.evals:
            result["expanded_top1"] = self._expanded_accuracy(model, run)
        if "moved" in run.evals:
            result["moved_top1"] = self._moved_accuracy(model, run)
        if "seg_shift" in run.evals:
            result["shift_miou"] = self._shift_miou(model, run)

    def _accuracy(self, model, images: torch.Tensor, labels: torch.Tensor, info) -> float:
        mean = torch.tensor(info.mean).reshape(1, -1, 1, 1)
        std = torch.tensor(info.std).reshape(1, -1, 1, 1)
        hits = 0
        with torch.inference_mode():
            for i in range(0, len(images), 500):
                x = (images[i : i + 500].float() / 255 - mean) / std
                hits += (model(x).argmax(1) == labels[i : i + 500]).sum().item()
        return 100.0 * hits / len(images)

    def _test_images(self, run: LabRun, img_size: int | None = None):
        raw, info = load_split(run.data, "test", self.data_dir, img_size)
        images, labels = raw.images, raw.labels
        if self.s.test_subset:
            images, labels = images[: self.s.test_subset], labels[: self.s.test_subset]
        return images, labels, info

    def _shift_accuracy(self, model, run: LabRun) -> dict[str, float]:
        """Test accuracy when every image moves k pixels (mean over up, down, left, right), k in SHIFTS."""
        images, labels, info = self._test_images(run)
        idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[: self.s.shift_images]
        images, labels = images[idx], labels[idx]
        out = {}
        for k in SHIFTS:
            moves = [(0, 0)] if k == 0 else [(k, 0), (-k, 0), (0, k), (0, -k)]
            accs = [self._accuracy(model, shift_images(images, dy, dx), labels, info) for dy, dx in moves]
            out[str(k)] = statistics.mean(accs)
        return out

    def _shift_miou(self, model, run: LabRun) -> dict[str, float]:
        """Test mean IoU of a segmentation model on its test scenes as they are ("0") and moved by
        :data:`SEG_SHIFT` pixels, masks alike (mean over up, down, left, right), and the floor: the mean IoU of
        predicting background everywhere on the unmoved scenes ("floor")."""
        from torch.utils.data import DataLoader

        from ..data import SegmentationImages, shift_scenes
        from ..train import evaluate_segmentation

        scenes, info = load_split(run.data, "test", self.data_dir)
        n = min(len(scenes), self.s.test_subset or len(scenes))
        mean = torch.tensor(info.mean).reshape(1, -1, 1, 1)
        std = torch.tensor(info.std).reshape(1, -1, 1, 1)

        def miou(net: nn.Module, s: SegmentationImages) -> float:
            images = (s.images[:n].float() / 255 - mean) / std
            loader = DataLoader(list(zip(images, s.masks[:n].long(), strict=True)), batch_size=100)
            with torch.inference_mode():
                return evaluate_segmentation(net, loader, info.num_classes, ignore_index=s.ignore_index).miou

        k = SEG_SHIFT
        moved = [miou(model, shift_scenes(scenes, dy, dx)) for dy, dx in ((k, 0), (-k, 0), (0, k), (0, -k))]
        floor = miou(_AllBackground(info.num_classes), scenes)
        return {"0": miou(model, scenes), str(k): statistics.mean(moved), "floor": floor}

    def _train_accuracy(self, model, run: LabRun) -> float:
        """Accuracy on (up to :data:`GAP_IMAGES` of) the images the model was trained on, without augmentation."""
        data = build_data(TrainConfig.from_dict(self._config(run)), None, None)
        idx = data.train.indices[:GAP_IMAGES]
        images, labels = data.train.base.images[idx], data.train.base.labels[idx]
        return self._accuracy(model, images, labels, data.info)

    def _moved_accuracy(self, model, run: LabRun) -> float:
        """Test accuracy of a model trained on aligned objects (``<data>-canvas``) on the test set with the objects
        moved (``<data>-translated``)."""
        moved = run.but(data=run.data.removesuffix("-canvas") + "-translated")
        images, labels, info = self._test_images(moved)
        return self._accuracy(model, images, labels, info)

    def _expanded_accuracy(self, model, run: LabRun) -> float:
        """Test accuracy at twice the size of the block-diagonally expanded model, before any fine-tuning."""
        big = expand_token_mixing(model, 2 * model.img_size).eval()
        images, labels, info = self._test_images(run, 2 * model.img_size)
        return self._accuracy(big, images, labels, info)

    def latency(self, exp: Experiment) -> None:
        """Deploy-form latency of the experiment's models, timed round-robin in one run (on an idle machine)."""
        path = self.results / f"{exp.key}_latency.json"
        if not exp.latency:
            return
        batch = exp.latency_batch or self.s.latency_batch
        if set(current_latency(read_latency(path), exp.latency, batch).get("rows", {})) == set(exp.latency):
            return  # timed already, every model under its planned label, config and batch (else all again)
        cands, labels = [], []
        for label, (name, args) in exp.latency.items():
            model = reparameterize(create_model(name, **args).eval())
            x = torch.randn(batch, model.in_chans, model.img_size, model.img_size)
            cands.append(Candidate("mlpvision", "eager", inference_call(model, x), None))
            labels.append(label)
        timing = measure(cands, self.s.latency_repeats, warmup=2)
        rows = {
            label: {
                "median_ms": t["median_s"] * 1e3,
                "p25_ms": t["p25_s"] * 1e3,
                "p75_ms": t["p75_s"] * 1e3,
                "config": latency_config(*exp.latency[label]),
            }
            for label, t in zip(labels, timing, strict=True)
        }
        meta = {"batch_size": batch, "threads": torch.get_num_threads()}
        write_json(path, {**meta, "machine": machine_description(), "rows": rows})


class _AllBackground(nn.Module):
    """A segmentation "model" that predicts class 0 (background) at every pixel: the floor of the shift test."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = x.new_zeros(x.shape[0], self.num_classes, *x.shape[-2:])
        logits[:, 0] = 1.0
        return logits


def _load(path: Path):
    return load_checkpoint(path, device="cpu")


def selected(settings: Settings, only: list[str] | None, results: Path | None = None) -> list[Experiment]:
    """The experiments of the plan that ``only`` names (all when empty); an unknown key is a ConfigError."""
    exps = plan(settings, results)
    known = [e.key for e in exps]
    if only:
        bad = sorted(set(only) - set(known) - {"headline_vs_cnn"})
        if bad:
            raise ConfigError(f"unknown experiment(s) {', '.join(bad)}; choose from {', '.join(known)}")
        exps = [e for e in exps if e.key in only]
    return exps


def run_lab(
    settings: Settings,
    results: str | os.PathLike = "results/lab",
    runs: str | os.PathLike = "runs/lab",
    only: list[str] | None = None,
    data_dir: str | None = None,
    progress: Callable[[str], None] | None = None,
    latency: bool = True,
    executor: Executor | None = None,
) -> list[Experiment]:
    """Runs (or resumes) the experiments of ``plan(settings)`` (``only`` selects by key) and returns them.

    The tuning comes first, whatever ``only`` selects: every other run trains at the rate it chooses. ``latency``:
    also time each experiment's models once its runs are done (leave it off while other work loads the machine, and
    time them later with ``latency_only``). ``executor``: where the runs train (:mod:`mlpvision.lab.executors`; in
    this process by default)."""
    results = Path(results)
    executor = executor or LocalExecutor()
    selected(settings, only, results)  # an unknown key fails before anything trains
    lab = Lab(settings, results, Path(runs), data_dir)
    from .registration import (
        amendment_hash,
        correction_hashes,
        plan_hash,
    )  # the plan's record imports the plan (which imports us)

    meta = {
        "settings": dataclasses.asdict(settings),
        "machine": machine_description(),
        "plan_hash": plan_hash(settings),
        "amendment_hash": amendment_hash(settings),
        "correction_hashes": correction_hashes(settings),
    }
    write_json(results / "meta.json", meta)
    needed = needed_families(settings, only)
    while pending := plan_context(settings, results)[0].tuning.pending_of(needed):
        jobs = [(f"tuning: run {i + 1}/{len(pending)} {run.label}", run) for i, run in enumerate(pending)]
        executor.run(lab, [Batch("tuning", jobs)], progress)
    exps = [e for e in selected(settings, only, results) if e.kind != "tuning"]  # every family's rate is chosen
    batches = [
        Batch(
            exp.key,
            [
                (f"{exp.key}: run {i + 1}/{len(exp.runs)} {run.label} (seed {run.seed})", run)
                for i, run in enumerate(exp.runs)
            ],
            partial(lab.latency, exp) if latency else None,
        )
        for exp in exps
    ]
    executor.run(lab, batches, progress)
    return exps


def latency_only(settings: Settings, results: str | os.PathLike, only: list[str] | None = None) -> None:
    """Times the deploy forms of every selected experiment whose latency table is missing or stale."""
    lab = Lab(settings, Path(results), Path("."))
    for exp in selected(settings, only, Path(results)):
        lab.latency(exp)
