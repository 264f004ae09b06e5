"""The inductive-bias lab's runner: trains what the plan needs, measures it, and keeps the ledger.

``mlpvision lab`` trains every run of every experiment (skipping runs whose result file exists, resuming an
interrupted one from its checkpoint), measures what each needs (test accuracy, accuracy under shifts, the expanded
model before fine-tuning, deploy-form latency timed side by side), and writes one JSON file per run under
``results/lab/``; the report is generated from those files alone. ``mlpvision lab --plan`` prints the ledger: each
experiment's runs and its estimated CPU hours on this machine, from a timing probe of each model (cached).
``--quick`` runs the same pipeline on tiny budgets (the tests do).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..data import load_split, plain_split, shift_images
from ..deploy import Candidate, OrtModel, export_onnx, inference_call, measure
from ..errors import ConfigError
from ..io import load_checkpoint, save_figure, write_json
from ..models import count, create_model
from ..plotting import pyplot
from ..reparam import non_mlp_layers, reparameterize
from ..runtime import machine_description
from ..train import TrainConfig, TrainingError, build_data, expand_token_mixing, train
from .plan import plan, plan_context
from .publish import TEACHER_ROLE
from .spec import EVAL_KEYS, SHIFTS, Experiment, LabRun, Settings
from .stats import paired_bootstrap

__all__ = ["Lab", "headline_vs_cnn", "ledger", "run_lab"]

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
            result = json.loads(path.read_text())
            missing = [e for e in run.evals if EVAL_KEYS[e] not in result]
            if not missing and (has_model or not need_model or result.get("diverged")):
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
        log.info("lab: training %s (%s)", run.key, run.label)
        try:
            summary = train(TrainConfig.from_dict(cfg), resume=True)
        except TrainingError as e:  # a learning rate too high for the model: a result, not a failure
            result = self._diverged(run, cfg, str(e))
            write_json(self.result_path(run), result)
            return result
        model = _load(self.model_path(run))
        deploy = reparameterize(model.eval())
        result = {
            **self._identity(run, cfg),
            "summary": self._portable(summary),
            "num_classes": model.num_classes,
            "params": count(model).params,
            "macs": count(model).macs,
            "deploy_params": count(deploy).params,
            "deploy_macs": count(deploy).macs,
            "history": self._history(run),
        }
        self._measure(run, model, result)
        write_json(self.result_path(run), result)
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
        keys = ("epoch", "epoch_seconds", "train_top1", "val_top1")
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
            "summary": {"test_top1_final": chance, "train_seconds": 0.0, "steps": None},
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

    def _train_accuracy(self, model, run: LabRun) -> float:
        """Accuracy on (up to 5 000 of) the images the model was trained on, without augmentation."""
        data = build_data(TrainConfig.from_dict(self._config(run)), None, None)
        idx = data.train.indices[:5000]
        images, labels = data.train.base.images[idx], data.train.base.labels[idx]
        return self._accuracy(model, images, labels, data.info)

    def _expanded_accuracy(self, model, run: LabRun) -> float:
        """Test accuracy at twice the size of the block-diagonally expanded model, before any fine-tuning."""
        big = expand_token_mixing(model, 2 * model.img_size).eval()
        images, labels, info = self._test_images(run, 2 * model.img_size)
        return self._accuracy(big, images, labels, info)

    def latency(self, exp: Experiment) -> None:
        """Deploy-form latency of the experiment's models, timed round-robin in one run."""
        path = self.results / f"{exp.key}_latency.json"
        if not exp.latency or path.is_file():
            return
        cands, labels = [], []
        for label, (name, args) in exp.latency.items():
            model = reparameterize(create_model(name, **args).eval())
            x = torch.randn(self.s.latency_batch, model.in_chans, model.img_size, model.img_size)
            cands.append(Candidate("mlpvision", "eager", inference_call(model, x), None))
            labels.append(label)
        timing = measure(cands, self.s.latency_repeats, warmup=2)
        rows = {
            label: {"median_ms": t["median_s"] * 1e3, "p25_ms": t["p25_s"] * 1e3, "p75_ms": t["p75_s"] * 1e3}
            for label, t in zip(labels, timing, strict=True)
        }
        meta = {"batch_size": self.s.latency_batch, "threads": torch.get_num_threads()}
        write_json(path, {**meta, "machine": machine_description(), "rows": rows})


def _load(path: Path):
    return load_checkpoint(path, device="cpu")


def _selected(settings: Settings, only: list[str] | None, results: Path | None = None) -> list[Experiment]:
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
) -> list[Experiment]:
    """Runs (or resumes) the experiments of ``plan(settings)`` (``only`` selects by key) and returns them.

    The tuning comes first, whatever ``only`` selects: every other run trains at the rate it chooses."""
    results = Path(results)
    _selected(settings, only, results)  # an unknown key fails before anything trains
    lab = Lab(settings, results, Path(runs), data_dir)
    meta = {"settings": dataclasses.asdict(settings), "machine": machine_description()}
    write_json(results / "meta.json", meta)
    while pending := plan_context(settings, results)[0].tuning.pending:
        for i, run in enumerate(pending):
            if progress:
                progress(f"tuning: run {i + 1}/{len(pending)} {run.label}")
            lab.ensure(run)
    exps = [e for e in _selected(settings, only, results) if e.kind != "tuning"]  # every family's rate is chosen
    for exp in exps:
        for i, run in enumerate(exp.runs):
            if progress:
                progress(f"{exp.key}: run {i + 1}/{len(exp.runs)} {run.label} (seed {run.seed})")
            lab.ensure(run)
        lab.latency(exp)
    return exps


# ---- the ledger ---------------------------------------------------------------------------------------------


def _probe_key(run: LabRun) -> str:
    size = run.train.get("img_size") or run.model_args.get("img_size")
    return json.dumps({"model": run.model, "args": dict(run.model_args), "size": size}, sort_keys=True, default=str)


def _seconds_per_image(run: LabRun, batch: int, steps: int = 4) -> float:
    """Training seconds per image of ``run``'s model on this machine (random data, float32, AdamW)."""
    data = load_split(run.data, "test")[1]
    size = run.train.get("img_size") or run.model_args.get("img_size") or data.img_size
    args = {**dict(run.model_args), "img_size": size}
    model = create_model(run.model, num_classes=data.num_classes, in_chans=data.in_chans, **args)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, data.in_chans, size, size)
    y = torch.randint(0, data.num_classes, (batch,))
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times) / batch


def ledger(settings: Settings, results: Path, runs: Path, only: list[str] | None = None) -> list[dict]:
    """Per experiment: its runs, those done, the estimated CPU hours of what is left and of the whole, on this
    machine (training images x a timed training step per image of each model, x the threads; evaluation and
    checkpoints add a little), and the CPU hours the finished runs spent training, wherever they ran (``spent``,
    from their result files). Timing probes are cached in ``runs/costs.json`` per machine."""
    lab = Lab(settings, results, runs)
    cache_path = runs / "costs.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    machine = machine_description()
    costs = cache.setdefault(machine, {})
    rows, seen = [], set()
    for exp in _selected(settings, only):
        total = left = spent = 0.0
        done = 0
        needed = {r.key: r for r in exp.runs}
        needed.update({r.teacher.key: r.teacher for r in exp.runs if r.teacher})
        needed.update({r.init.key: r.init for r in exp.runs if r.init})
        for run in needed.values():
            key = _probe_key(run)
            if key not in costs:
                costs[key] = _seconds_per_image(run, settings.batch_size)
            seconds = costs[key] * _images(run, settings)
            first = run.key not in seen  # a run shared by two experiments costs once, in the first
            seen.add(run.key)
            finished = lab.result_path(run).is_file()
            done += finished
            total += seconds if first else 0.0
            left += seconds if first and not finished else 0.0
            spent += _spent_cpu_seconds(lab.result_path(run)) if first and finished else 0.0
        threads = torch.get_num_threads()
        hours = {"cpu_hours": total * threads / 3600, "cpu_hours_left": left * threads / 3600}
        rows.append({"experiment": exp.key, "runs": len(exp.runs), "done": done, **hours, "spent": spent / 3600})
    write_json(cache_path, cache)
    return rows


def _spent_cpu_seconds(result: Path) -> float:
    """The CPU seconds a finished run spent training: its training clock x the threads it ran on (both recorded in
    its result file)."""
    r = json.loads(result.read_text())
    threads = re.search(r"(\d+) threads", r.get("machine", ""))
    return r["summary"]["train_seconds"] * (int(threads.group(1)) if threads else 1)


def _images(run: LabRun, settings: Settings) -> int:
    """Training images a run passes through, in training-step equivalents: a forward pass (a teacher's, the
    validation after every epoch, the two test evaluations at the end) counts a third of a training step."""
    epochs, val = int(run.train.get("epochs", 1)), int(run.train.get("val_size", 5000))
    train_images = int(run.train.get("train_subset") or 0) or 60000 - val
    test = settings.test_subset or 10000
    forwards = epochs * (val + (train_images if run.teacher is not None else 0)) + 2 * test
    return epochs * train_images + forwards // 3


# ---- the all-MLP model against the CNN ------------------------------------------------------------------------


def headline_vs_cnn(published: list[Path], results: Path, figures: Path, batch: int = 64, repeats: int = 30) -> Path:
    """The all-MLP models against the CNN trained by the same recipe: test top-1 with paired bootstrap intervals
    (per test image), and CPU latency of each deploy form at batch 1 and ``batch``, eager and ONNX Runtime, timed
    round-robin in one run. Writes ``results/headline_vs_cnn.json`` and the accuracy/latency figure."""
    test, _ = plain_split("fashion-mnist", "test")
    rows, correct, cands = [], {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for folder in published:
            e = json.loads((folder / "eval.json").read_text())
            model = load_checkpoint(folder / "model.safetensors", device="cpu").float().eval()
            correct[folder.name] = hits = _correct(model, test)  # one pass: accuracy and the paired bootstrap
            onnx = OrtModel(export_onnx(model, Path(tmp) / f"{folder.name}.onnx").path)
            for b in (1, batch):
                x = torch.randn(b, model.in_chans, model.img_size, model.img_size)
                cands.append(Candidate(folder.name, f"{b}/eager", inference_call(model, x), None))
                cands.append(Candidate(folder.name, f"{b}/onnxruntime", lambda o=onnx, x=x: o(x), None))
            rows.append(
                {
                    "name": folder.name,
                    "file": f"{folder.as_posix()}/model.safetensors",
                    "all_mlp": not non_mlp_layers(model),
                    "teacher": e.get("role") == TEACHER_ROLE,
                    "params": sum(p.numel() for p in model.parameters()),
                    "top1": 100.0 * sum(hits) / len(hits),
                    "best_val_top1": e["best_val_top1"],
                    "recipe": e["recipe"],
                }
            )
        timing = measure(cands, repeats, warmup=3)
    for row in rows:
        mine = [(c, t) for c, t in zip(cands, timing, strict=True) if c.impl == row["name"]]
        row["latency_ms"] = {c.backend: t["median_s"] * 1e3 for c, t in mine}
    cnn = next(r for r in rows if not r["all_mlp"])
    mlps = [r for r in rows if r["all_mlp"]]
    same = next((r for r in mlps if r["name"] == "allmlp_headline"), mlps[0])
    best = max(mlps, key=lambda r: r["best_val_top1"])  # chosen on validation, never on test
    comparisons = []
    for label, r in (("all-MLP, same recipe", same), ("best all-MLP on validation", best)):
        iv = paired_bootstrap(correct[r["name"]], correct[cnn["name"]])
        name = f"{label} (`{r['name']}`) vs the CNN (`{cnn['name']}`)"
        comparisons.append({"name": name, "kind": "noninferior", "margin": 0.5, "interval": dataclasses.asdict(iv)})
    out = results / "headline_vs_cnn.json"
    figure = _plot_accuracy_latency(rows, figures / "lab_headline_vs_cnn.png")
    summary = {
        "question": "Does the best all-MLP deploy-form model match the CNN trained by the same recipe and budget "
        "(80 epochs of all 55 000 training images, AdamW, EMA, random erasing), within half a point, and how "
        "fast is each on a CPU?",
        "models": f"`{same['name']}` (all-MLP, deployed as FC layers; random erasing 0.25) and `{cnn['name']}` "
        "(the same layout with 3x3 convs, three pairs per stage; random erasing 0.5) share the headline recipe; the "
        "other all-MLP rows distil from that CNN or add a full-resolution stage.",
        "rows": rows,
        "comparisons": comparisons,
        "batch": batch,
        "figure": figure,
        "method": "paired bootstrap over the 10 000 test images (2 000 resamples, percentile); one trained model "
        "each, so the interval covers test-set sampling, not seed-to-seed variation",
        "latency": f"median of {repeats} calls, float32, {torch.get_num_threads()} threads, all models and backends "
        "timed round-robin in one run",
        "machine": machine_description(),
    }
    write_json(out, summary)
    return out


def _correct(model, data) -> list[bool]:
    out = []
    with torch.inference_mode():
        for images, labels in DataLoader(data, batch_size=500):
            out += (model(images).argmax(1) == labels).tolist()
    return out


def _plot_accuracy_latency(rows: list[dict], path: Path) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for backend, marker in (("eager", "o"), ("onnxruntime", "s")):
        for r in rows:
            ax.scatter(r["latency_ms"][f"1/{backend}"], r["top1"], marker=marker, color="C0" if r["all_mlp"] else "C3")
            ax.annotate(f"{r['name']} ({backend})", (r["latency_ms"][f"1/{backend}"], r["top1"]), fontsize=6)
    title = "All-MLP (blue) and CNN (red): accuracy against latency"
    ax.set(xlabel="latency at batch 1 (ms, CPU)", ylabel="Fashion-MNIST test top-1 (%)", title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    return path.name
