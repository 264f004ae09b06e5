"""The lab's compute ledger: per experiment, its runs, those done, the estimated CPU hours of what is left and of
the whole on this machine, and the CPU hours the finished runs spent (``mlpvision lab --plan``).

Estimates come from each model's measured training time per image: read off finished result files of the same
model and configuration when there are any (no timing needed), else from a short timing probe, cached per machine
in the user's cache folder. A configuration is the model's resolved config, so a run that states a default
(``pos_embed=True``) and one that leaves it unstated are priced as the one model they are.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import statistics
import time
from pathlib import Path

import torch

from ..data import load_split
from ..errors import ConfigError
from ..io import write_json
from ..models import create_model, resolve_config
from ..runtime import machine_description
from .runner import Lab, selected
from .spec import LabRun, Settings, read_result

__all__ = ["ledger"]


def _probe_key(run: LabRun) -> str:
    size = run.train.get("img_size") or run.model_args.get("img_size")
    args = {**dict(run.model_args), **({"img_size": size} if size else {})}
    try:
        config = dataclasses.asdict(resolve_config(run.model, **args))
    except (ConfigError, TypeError, ValueError):  # a model outside the registry's configs: its stated arguments
        config = args
    return json.dumps({"model": run.model, "config": config}, sort_keys=True, default=str)


def _seconds_per_image(run: LabRun, batch: int, steps: int = 4) -> float:
    """Training seconds per image of ``run``'s model on this machine (random data, float32, AdamW)."""
    data = load_split(run.data, "test")[1]
    size = run.train.get("img_size") or run.model_args.get("img_size") or data.img_size
    args = {"num_classes": data.num_classes, "in_chans": data.in_chans, **dict(run.model_args), "img_size": size}
    model = create_model(run.model, **args)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, args["in_chans"], size, size)
    with torch.no_grad():
        out_shape = model(x).shape  # (batch, classes) or, for a segmentation model, (batch, classes, H, W)
    y = torch.randint(0, out_shape[1], (batch, *out_shape[2:]))
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


def _cache_path() -> Path:
    """Where timing probes are cached: the user's cache folder, never the current one."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "mlpvision" / "lab_costs.json"


def _measured(results: Path) -> dict[str, float]:
    """Seconds per training image by probe key, read off the finished result files: the fastest run of each key.
    A shared machine only ever slows a run down (other jobs take its cores), so the fastest run is the closest to
    what the model costs on the machine alone; a median would carry the load of whichever runs shared it."""
    seen: dict[str, list[float]] = {}
    for f in (results / "runs").glob("*.json") if (results / "runs").is_dir() else []:
        try:
            r = json.loads(f.read_text())
            run = LabRun(label=r["label"], model=r["model"], model_args=r["model_args"], train=r["train_config"])
            seconds, steps = r["summary"]["train_seconds"], r["summary"].get("steps")
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if seconds and steps:
            batch = int(r["train_config"].get("batch_size", 128))
            seen.setdefault(_probe_key(run), []).append(seconds / (steps * batch))
    return {k: min(v) for k, v in seen.items()}


def ledger(settings: Settings, results: Path, runs: Path, only: list[str] | None = None) -> list[dict]:
    """Per experiment: its runs, those done, the estimated CPU hours of what is left and of the whole, on this
    machine (training images x the training time per image of each model, x the threads; evaluation adds a third
    of a step per image), and the CPU hours the finished runs spent training, wherever they ran (``spent``, from
    their result files). Times per image come from finished runs of the same model when there are any, else from a
    timing probe cached per machine in the user's cache folder."""
    lab = Lab(settings, results, runs)
    measured = _measured(results)
    cache_path = _cache_path()
    try:
        cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    except (OSError, ValueError):
        cache = {}
    costs = cache.setdefault(machine_description(), {})
    probed = False
    rows, seen = [], set()
    for exp in selected(settings, only, results):
        total = left = spent = 0.0
        done = 0
        needed = {r.key: r for r in exp.runs}  # the trainings it needs: its runs, their teachers and starts
        needed.update({r.teacher.key: r.teacher for r in exp.runs if r.teacher})
        needed.update({r.init.key: r.init for r in exp.runs if r.init})
        for run in needed.values():
            key = _probe_key(run)
            per_image = measured.get(key) or costs.get(key)
            if per_image is None:
                per_image = costs[key] = _seconds_per_image(run, settings.batch_size)
                probed = True
            seconds = per_image * _images(run, settings)
            first = run.key not in seen  # a run shared by two experiments costs once, in the first
            seen.add(run.key)
            finished = lab.result_path(run).is_file()
            done += finished
            total += seconds if first else 0.0
            left += seconds if first and not finished else 0.0
            spent += _spent_cpu_seconds(lab.result_path(run)) if first and finished else 0.0
        threads = torch.get_num_threads()
        hours = {"cpu_hours": total * threads / 3600, "cpu_hours_left": left * threads / 3600}
        rows.append({"experiment": exp.key, "runs": len(needed), "done": done, **hours, "spent": spent / 3600})
    if probed:
        with contextlib.suppress(OSError):  # a read-only home: the estimates stand, the next call probes again
            write_json(cache_path, cache)
    return rows


def _spent_cpu_seconds(result: Path) -> float:
    """The CPU seconds a finished run spent training: the CPU time it recorded, or for a run recorded before that
    field, its training clock x the threads it ran on (a wall clock: it also counts the time the run was stopped)."""
    r = read_result(result)
    if r["summary"].get("train_cpu_seconds"):
        return r["summary"]["train_cpu_seconds"]
    threads = re.search(r"(\d+) threads", r.get("machine", ""))
    return r["summary"]["train_seconds"] * (int(threads.group(1)) if threads else 1)


def _images(run: LabRun, settings: Settings) -> int:
    """Training images a run passes through, in training-step equivalents: a forward pass (a teacher's, the
    validation after every epoch, the two test evaluations at the end) counts a third of a training step."""
    epochs, val = int(run.train.get("epochs", 1)), int(run.train.get("val_size", 5000))
    train_images = int(run.train.get("train_subset") or 0) or 60000 - val
    batch = int(run.train.get("batch_size", settings.batch_size))
    steps = min(epochs * (train_images // batch), int(run.train.get("max_steps") or 0) or 10**12)
    epochs = min(epochs, -(-steps // max(train_images // batch, 1)))
    test = settings.test_subset or 10000
    forwards = epochs * val + (steps * batch if run.teacher is not None else 0) + 2 * test
    return steps * batch + forwards // 3
