"""The inductive-bias lab: the claims of the MLP papers as small, rerunnable experiments.

``mlpvision lab`` trains every run of every experiment (skipping runs whose result file exists, resuming
interrupted ones from their checkpoint), measures what each experiment needs (test accuracy, accuracy under
shifts, train/test gap, deploy-form latency timed side by side), writes one JSON file per run under
``results/lab/`` and regenerates ``docs/results.md`` and ``docs/figures/lab_*.png`` from those files alone.
``--quick`` runs the same pipeline on tiny budgets (the tests use it).

Every table shares one budget across its rows and states it; runs with several seeds report mean ± std.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import default_collate

from ..data import load_split, shift_images
from ..deploy import Candidate, measure
from ..errors import ConfigError, InputShapeError
from ..io import load_checkpoint, write_json
from ..models import count, create_model
from ..reparam import reparameterize
from ..runtime import machine_description, pick_device
from ..train import TrainConfig, build_data, train
from .plan import plan
from .spec import EVAL_KEYS, SHIFTS, Experiment, LabRun, Settings, check_data

__all__ = ["Lab", "run_lab"]

log = logging.getLogger(__name__)


def _calibrate_steps(run: LabRun, cfg_dict: dict, warmup: int, timed: int) -> dict[str, int]:
    """Optimizer steps of ``run`` that fit its wall-clock budget (``steps``), from the median of ``timed`` training
    steps on its own data pipeline (augmentation included) and on the device it will train on, after ``warmup``
    steps, which pay for kernel selection and memory allocation; and the optimizer steps of one epoch of that
    pipeline (``steps_per_epoch``)."""
    cfg = TrainConfig.from_dict(cfg_dict)
    device = pick_device(cfg.device)  # the rule train() follows
    amp = cfg.amp_on(device)
    model = create_model(run.model, **dict(run.model_args)).to(device)
    train_set = build_data(cfg, model.img_size, model.in_chans).train
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(0))
    wait = torch.cuda.synchronize if device.type == "cuda" else lambda: None  # the clock waits for the GPU
    times = []
    for i in range(warmup + timed):
        t0 = time.perf_counter()
        idx = order[(i * cfg.batch_size) % len(order) :][: cfg.batch_size]
        x, y = default_collate([train_set[j] for j in idx.tolist()])
        if train_set.batch_aug is not None:
            x = train_set.batch_aug(x, idx)
        x, y = x.to(device), y.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        wait()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    step = statistics.median(times) * 1.05  # the schedule, metrics and checkpoints add a little
    per_epoch = max(len(train_set) // cfg.batch_size, 1)
    return {"steps": max(1, round(run.equal_time_min * 60 / step)), "steps_per_epoch": per_epoch}


class Lab:
    """Runs a plan: trains missing runs, measures, writes results; everything under ``results`` and ``runs``."""

    def __init__(self, settings: Settings, results: Path, runs: Path, data_dir: str | None = None) -> None:
        self.s, self.results, self.runs, self.data_dir = settings, Path(results), Path(runs), data_dir

    def result_path(self, run: LabRun) -> Path:
        return self.results / "runs" / f"{run.key}.json"

    def model_path(self, run: LabRun) -> Path:
        return self.runs / run.key / "model.safetensors"

    def _config(self, run: LabRun) -> dict:
        d = {
            "model": run.model,
            "data": run.data,
            "seed": run.seed,
            "model_args": dict(run.model_args),
            "out": str(self.runs / run.key),
            "data_dir": self.data_dir,
            **dict(run.train),
        }
        return d

    def ensure(self, run: LabRun, need_model: bool = False) -> dict:
        """The result of ``run``, training it (and its teacher / init run) first when needed.

        A finished run is skipped; an interrupted one resumes from its checkpoint. ``need_model``: the model file
        must exist too (a teacher or a fine-tuning start), so a run whose files were deleted is redone.
        """
        path = self.result_path(run)
        has_model = self.model_path(run).is_file()
        if path.is_file():
            result = json.loads(path.read_text())
            missing = [e for e in run.evals if EVAL_KEYS[e] not in result]
            if not missing and (has_model or not need_model):
                return result
            if has_model:  # trained for another experiment that did not need these measurements
                self._measure(run, _load(self.model_path(run)), result)
                write_json(path, result)
                return result
        return self._train(run)

    def _train(self, run: LabRun) -> dict:
        cfg = self._config(run)
        if run.teacher is not None:
            self.ensure(run.teacher, need_model=True)
            cfg["teacher"] = str(self.model_path(run.teacher))
        if run.init is not None:
            self.ensure(run.init, need_model=True)
            cfg["init"] = str(self.model_path(run.init))
        if run.equal_time_min:
            # measured once and kept, so that a resumed run keeps the schedule it started with; the schedule
            # (warm-up on a fifth of the steps, then cosine) ends at the last step that fits, mid-epoch or not
            calibration = self.runs / run.key / "calibration.json"
            if not calibration.is_file():
                write_json(calibration, _calibrate_steps(run, cfg, *self.s.timing_steps))
            fit = json.loads(calibration.read_text())
            steps, per_epoch = fit["steps"], fit["steps_per_epoch"]
            cfg.update(max_steps=steps, epochs=math.ceil(steps / per_epoch), warmup_epochs=0.2 * steps / per_epoch)
            cfg["time_limit_min"] = run.equal_time_min * 1.5  # a safety net; the steps are sized to fit
        log.info("lab: training %s (%s)", run.key, run.label)
        summary = train(TrainConfig.from_dict(cfg), resume=True)
        model_file = self.model_path(run)
        model = _load(model_file)
        deploy = reparameterize(model.eval())
        history = json.loads((self.runs / run.key / "metrics.json").read_text())
        amp = json.loads((self.runs / run.key / "config.json").read_text())["amp"]  # as train() resolved it
        result = {
            "key": run.key,
            "label": run.label,
            "model": run.model,
            "seed": run.seed,
            "data": run.data,
            "model_args": dict(run.model_args),
            "summary": self._portable(summary),
            "train_config": self._portable({k: v for k, v in cfg.items() if k != "data_dir"}),
            "params": count(model).params,
            "macs": count(model).macs,
            "deploy_params": count(deploy).params,
            "deploy_macs": count(deploy).macs,
            "history": [
                {k: h[k] for k in ("epoch", "epoch_seconds", "train_top1", "val_top1") if k in h} for h in history
            ],
            "machine": machine_description(),
            "precision": "bfloat16 autocast" if amp else "float32",
        }
        self._measure(run, model, result)
        write_json(self.result_path(run), result)
        return result

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

    def _eval_set(self, run: LabRun, split: str):
        raw, info = load_split(run.data, split, self.data_dir)
        return raw.images, raw.labels, info

    def _accuracy(self, model, images: torch.Tensor, labels: torch.Tensor, info) -> float:
        mean = torch.tensor(info.mean).reshape(1, -1, 1, 1)
        std = torch.tensor(info.std).reshape(1, -1, 1, 1)
        hits = 0
        with torch.inference_mode():
            for i in range(0, len(images), 500):
                x = (images[i : i + 500].float() / 255 - mean) / std
                hits += (model(x).argmax(1) == labels[i : i + 500]).sum().item()
        return 100.0 * hits / len(images)

    def _shift_accuracy(self, model, run: LabRun) -> dict[str, float]:
        """Test accuracy when every image moves k pixels (mean over up, down, left, right), k in SHIFTS."""
        images, labels, info = self._eval_set(run, "test")
        idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[: self.s.shift_images]
        images, labels = images[idx], labels[idx]
        out = {}
        for k in SHIFTS:
            moves = [(0, 0)] if k == 0 else [(k, 0), (-k, 0), (0, k), (0, -k)]
            accs = [self._accuracy(model, shift_images(images, dy, dx), labels, info) for dy, dx in moves]
            out[str(k)] = statistics.mean(accs)
        return out

    def _train_accuracy(self, model, run: LabRun) -> float:
        """Accuracy on (up to 5 000 of) the images the model was trained on, without augmentation."""
        data = build_data(TrainConfig.from_dict(self._config(run)), None, None)
        idx = data.train.indices[:5000]
        images, labels = data.train.base.images[idx], data.train.base.labels[idx]
        return self._accuracy(model, images, labels, data.info)

    def latency(self, exp: Experiment) -> None:
        """Deploy-form latency of the experiment's models, timed round-robin in one run."""
        path = self.results / f"{exp.key}_latency.json"
        if not exp.latency or path.is_file():
            return
        cands, labels = [], []
        for label, (m, a) in exp.latency.items():
            model = reparameterize(create_model(m, **a).eval())
            x = torch.randn(self.s.latency_batch, model.in_chans, model.img_size, model.img_size)

            def call(model=model, x=x) -> object:
                with torch.inference_mode():
                    return model(x)

            cands.append(Candidate("mlpvision", "eager", call, None))
            labels.append(label)
        timing = measure(cands, self.s.latency_repeats, warmup=2)
        rows = {
            label: {"median_ms": t["median_s"] * 1e3, "p25_ms": t["p25_s"] * 1e3, "p75_ms": t["p75_s"] * 1e3}
            for label, t in zip(labels, timing, strict=True)
        }
        write_json(
            path,
            {
                "batch_size": self.s.latency_batch,
                "threads": torch.get_num_threads(),
                "machine": machine_description(),
                "rows": rows,
            },
        )

    def resolution_error(self) -> None:
        """Records the error a fixed-size model gives for another input size (experiment 7's first half)."""
        size = check_data(self.s.data)
        model = create_model(f"mixer_t4_{size}")
        shape = [1, model.in_chans, 2 * size, 2 * size]
        try:
            model(torch.zeros(shape))
            message = None
        except InputShapeError as e:
            message = str(e)
        write_json(
            self.results / "resolution_error.json", {"model": f"mixer_t4_{size}", "input": shape, "error": message}
        )


def _load(path: Path):
    return load_checkpoint(path, device="cpu")


def run_lab(
    settings: Settings,
    results: str | os.PathLike = "results/lab",
    runs: str | os.PathLike = "runs/lab",
    only: list[str] | None = None,
    data_dir: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Experiment]:
    """Runs (or resumes) the experiments of ``plan(settings)`` (``only`` selects by key) and returns them."""
    exps = plan(settings)
    known = [e.key for e in exps]
    if only:
        bad = sorted(set(only) - set(known))
        if bad:
            raise ConfigError(f"unknown experiment(s) {', '.join(bad)}; choose from {', '.join(known)}")
        exps = [e for e in exps if e.key in only]
    lab = Lab(settings, Path(results), Path(runs), data_dir)
    write_json(
        Path(results) / "meta.json", {"settings": dataclasses.asdict(settings), "machine": machine_description()}
    )
    for exp in exps:
        for i, run in enumerate(exp.runs):
            if progress:
                progress(f"{exp.key}: run {i + 1}/{len(exp.runs)} {run.label} (seed {run.seed})")
            lab.ensure(run)
        lab.latency(exp)
        if exp.key == "resolution":
            lab.resolution_error()
    return exps
