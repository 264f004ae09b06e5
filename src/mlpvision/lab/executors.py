"""Where the lab's runs train: in this process, one after another (``local``, the default), or as tasks on a Ray
cluster (``ray``), many at once on as many machines and GPUs as the cluster has.

An executor receives batches of runs (the tuning's pending runs; then every experiment's runs) and ensures each:
a finished run is skipped, a missing one trained and measured, its result file written under the lab's folders.
On Ray each run is one task declaring its resources (:func:`resources`); the task trains in a scratch folder on
its worker and returns the result and, when the driver needs it (a distillation teacher, a fine-tuning start), the
model file's bytes: the driver writes the result files, so no shared file system is needed. A run's teacher and
init run train first; a task that raises or whose node dies is retried ``retries`` times and then reported
(:class:`LabRunsFailed`) once everything else has finished; Ctrl-C cancels the tasks still running. In this process
a run that raises is reported the same way, without retries, and the runs that need its model are not tried.

Ray is an optional dependency (``pip install mlpvision[cluster]``); every node of a cluster needs mlpvision and
the data set (``--data-dir``) installed.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from ..errors import ConfigError, MlpVisionError
from ..io import write_json
from ..train import TrainingStopped
from .spec import LabRun, Settings, read_result

__all__ = [
    "EXECUTORS",
    "Batch",
    "Executor",
    "Failure",
    "LabRunsFailed",
    "LocalExecutor",
    "RayExecutor",
    "make_executor",
    "resources",
    "train_task",
]

log = logging.getLogger(__name__)

SMALL_RUN_IMAGES = 1000  # a run on at most this many training images (the few-image probes) shares a GPU
SMALL_GPU_FRACTION = 0.25  # the share of a GPU a small run (or any quick-mode run) declares
GIB = 1 << 30
# memory a run declares to the scheduler, by input side: the lab's 28/32-px models train in well under 1 GiB;
# 224-px models at batch 128 keep their activations and a decoded batch in host memory
MEMORY_GIB = ((64, 1.0), (10**9, 8.0))
QUICK_MEMORY_GIB = 0.5
SHOWN_FAILURES = 5  # failed runs named in the error message (all are in LabRunsFailed.failures and the log)


class Batch(NamedTuple):
    """Runs to ensure, each with its progress line, and what to do once they are all done (e.g. time latency)."""

    name: str
    jobs: list[tuple[str, LabRun]]
    after: Callable[[], None] | None = None


@dataclass(frozen=True)
class Failure:
    """A run that failed on every attempt (or whose teacher or init run failed)."""

    key: str
    label: str
    error: str
    attempts: int


class LabRunsFailed(MlpVisionError, RuntimeError):
    """Runs failed on every attempt; every other run finished and its result is written."""

    exit_code = 1  # the lab ran and could not finish every run

    def __init__(self, failures: list[Failure]) -> None:
        self.failures = failures
        lines = [f"{f.label} ({f.key}), {f.attempts} attempt(s): {f.error}" for f in failures[:SHOWN_FAILURES]]
        more = f"; and {len(failures) - SHOWN_FAILURES} more" if len(failures) > SHOWN_FAILURES else ""
        super().__init__(f"{len(failures)} lab run(s) failed; the others are written: " + "; ".join(lines) + more)


class Executor(Protocol):
    def run(self, lab, batches: list[Batch], progress: Callable[[str], None] | None = None) -> None:
        """Ensures every run of ``batches`` with ``lab`` (a :class:`~mlpvision.lab.runner.Lab`)."""


class LocalExecutor:
    """Trains every run in this process, one after another, batch by batch (the lab's default).

    A run that raises is logged (with its traceback when the error is not one of the library's own) and the lab
    goes on: the runs that need its model (its students, its fine-tunings) are reported with it, not tried, and
    every failure is reported at the end (:class:`LabRunsFailed`), as on Ray: a failed tuning run therefore ends
    the lab before any experiment runs (their rates are not chosen). Ctrl-C and SIGTERM stop the lab (the run in
    progress saves its state first: :class:`~mlpvision.train.TrainingStopped`).
    """

    def run(self, lab, batches: list[Batch], progress: Callable[[str], None] | None = None) -> None:
        say = progress or (lambda _m: None)
        failures: dict[str, Failure] = {}
        for batch in batches:
            for message, run in batch.jobs:
                say(message)
                self._ensure(lab, run, failures, say)
            if batch.after and not any(run.key in failures for _, run in batch.jobs):
                batch.after()
        if failures:
            raise LabRunsFailed(list(failures.values()))

    def _ensure(self, lab, run: LabRun, failures: dict[str, Failure], say, need_model: bool = False) -> bool:
        """Ensures ``run`` after its teacher and init run; False (and a :class:`Failure`) when it or one of them
        failed."""
        if run.key in failures:
            return False
        for dep in _dependencies(run):
            if not self._ensure(lab, dep, failures, say, need_model=True):
                failures[run.key] = Failure(run.key, run.label, f"its dependency {dep.label} failed", 0)
                return False
        try:
            lab.ensure(run, need_model=need_model)
        except TrainingStopped:  # SIGTERM or Ctrl-C: the run saved its state; the lab stops here
            raise
        except Exception as e:  # one run's failure must not cost the others
            failures[run.key] = Failure(run.key, run.label, _last_line(e), 1)
            if isinstance(e, MlpVisionError):
                log.error("lab: %s (%s) failed: %s", run.label, run.key, e)
            else:
                log.exception("lab: %s (%s) failed", run.label, run.key)
            say(f"lab: {run.label} (seed {run.seed}) failed: {_last_line(e)}; the other runs go on")
            return False
        return True


def resources(run: LabRun, settings: Settings, cluster_gpus: float, cpus: float = 1) -> dict[str, float]:
    """What one run's task declares to Ray: ``cpus`` CPUs (its training threads), memory by input size, and on a
    cluster with GPUs one GPU, or :data:`SMALL_GPU_FRACTION` of one for a small run (quick mode or at most
    :data:`SMALL_RUN_IMAGES` training images), so several small runs share a GPU. Without GPUs: none (the CPU
    path)."""
    images = int(run.train.get("train_subset") or 0)
    small = settings.quick or 0 < images <= SMALL_RUN_IMAGES
    gpus = 0.0 if cluster_gpus <= 0 else (SMALL_GPU_FRACTION if small else 1.0)
    side = _input_side(run)
    gib = QUICK_MEMORY_GIB if settings.quick else next(g for limit, g in MEMORY_GIB if side <= limit)
    return {"num_cpus": cpus, "num_gpus": gpus, "memory": int(gib * GIB)}


def _input_side(run: LabRun) -> int:
    size = run.train.get("img_size") or run.model_args.get("img_size")
    if size:
        return int(size)
    tail = run.model.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 224


def train_task(payload: dict) -> dict:
    """Ensures one run in a scratch folder (on a Ray worker) and returns ``{"result": dict, "model": bytes|None}``.

    ``payload``: the lab's class (the driver's, :class:`~mlpvision.lab.runner.Lab`), the settings, the run, the
    data folder, the threads, the result and model bytes of the run and its teacher / init run as far as the
    driver has them (``given``), and whether to return the model's bytes."""
    import torch

    torch.set_num_threads(max(1, int(payload["threads"])))
    run: LabRun = payload["run"]
    with tempfile.TemporaryDirectory(prefix="mlpvision-lab-") as tmp:
        lab = payload["lab"](payload["settings"], Path(tmp) / "results", Path(tmp) / "runs", payload["data_dir"])
        for key, (result, model) in payload["given"].items():
            if result is not None:
                write_json(lab.results / "runs" / f"{key}.json", result)
            if model is not None:
                path = lab.runs / key / "model.safetensors"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(model)
        result = lab.ensure(run, need_model=payload["return_model"])
        model_path = lab.model_path(run)
        model = model_path.read_bytes() if payload["return_model"] and model_path.is_file() else None
    return {"result": result, "model": model}


def _with_dependencies(runs: Iterable[LabRun]) -> dict[str, LabRun]:
    """Every run and, before it, its teacher and init run (recursively), once each, by key."""
    out: dict[str, LabRun] = {}

    def add(run: LabRun) -> None:
        for dep in (run.teacher, run.init):
            if dep is not None:
                add(dep)
        out.setdefault(run.key, run)

    for run in runs:
        add(run)
    return out


def _dependencies(run: LabRun) -> list[LabRun]:
    return [d for d in (run.teacher, run.init) if d is not None]


@dataclass
class RayExecutor:
    """Trains every run as a Ray task (see the module's docstring).

    Args:
        address: the cluster to join (``auto``: the one started on this machine with ``ray start``; None: a
            local one started for this process, or the one already initialised).
        cpus_per_run: CPUs (training threads) each run's task declares.
        retries: how often a failed task is retried (an exception in the task or a dead worker or node).
        work: the function a task runs (:func:`train_task`; a test can wrap it).
        init_args: extra arguments of ``ray.init``.
    """

    address: str | None = None
    cpus_per_run: float = 1
    retries: int = 2
    work: Callable[[dict], dict] = train_task
    init_args: dict[str, Any] = field(default_factory=dict)

    def run(self, lab, batches: list[Batch], progress: Callable[[str], None] | None = None) -> None:
        ray = require_ray()
        if not ray.is_initialized():
            ray.init(address=self.address, **{"logging_level": logging.WARNING, **self.init_args})
        say = progress or (lambda _m: None)
        wanted = [run for batch in batches for _, run in batch.jobs]
        runs = _with_dependencies(wanted)
        needed_models = {d.key for r in runs.values() for d in _dependencies(r)}
        todo = {k: r for k, r in runs.items() if not lab.finished(r, need_model=k in needed_models)}
        gpus = float(ray.cluster_resources().get("GPU", 0))
        remote = ray.remote(_call)
        failures: dict[str, Failure] = {}
        running: dict[Any, LabRun] = {}
        cpus = float(ray.cluster_resources().get("CPU", 0))
        say(f"ray: {len(todo)} of {len(runs)} runs to train on {cpus:g} CPUs, {gpus:g} GPUs")

        def submit_ready() -> None:
            for key, run in list(todo.items()):
                deps = _dependencies(run)
                failed = [d for d in deps if d.key in failures]
                if failed:
                    del todo[key]
                    failures[key] = Failure(key, run.label, f"its dependency {failed[0].label} failed", 0)
                    continue
                if any(d.key in todo or d.key in {r.key for r in running.values()} for d in deps):
                    continue
                del todo[key]
                payload = {
                    "lab": type(lab),
                    "settings": lab.s,
                    "run": run,
                    "data_dir": lab.data_dir,
                    "threads": self.cpus_per_run,
                    "return_model": key in needed_models,
                    "given": {r.key: _files(lab, r) for r in [run, *deps]},
                }
                options = resources(run, lab.s, gpus, self.cpus_per_run)
                ref = remote.options(
                    **options, max_retries=self.retries, retry_exceptions=True, name=f"lab {run.key}"
                ).remote(self.work, payload)
                running[ref] = run

        submit_ready()
        done = 0
        try:
            while running:
                [ref], _ = ray.wait(list(running), num_returns=1)
                run = running.pop(ref)
                try:
                    out = ray.get(ref)
                except ray.exceptions.RayError as e:
                    failures[run.key] = Failure(run.key, run.label, _last_line(e), self.retries + 1)
                    say(f"ray: {run.label} failed after {self.retries + 1} attempt(s): {_last_line(e)}")
                else:
                    write_json(lab.result_path(run), out["result"])
                    if out["model"] is not None:
                        lab.model_path(run).parent.mkdir(parents=True, exist_ok=True)
                        lab.model_path(run).write_bytes(out["model"])
                    done += 1
                    say(f"ray: done {done} {run.label} (seed {run.seed})")
                submit_ready()
        except KeyboardInterrupt:
            for ref in running:
                ray.cancel(ref)
            log.warning("lab: cancelled %d running task(s); finished results are written", len(running))
            raise
        for batch in batches:
            if batch.after and not any(run.key in failures for _, run in batch.jobs):
                batch.after()
        if failures:
            raise LabRunsFailed(list(failures.values()))


def _call(work: Callable[[dict], dict], payload: dict) -> dict:
    """A task's body: ``work(payload)`` (``work`` any picklable callable)."""
    return work(payload)


def _files(lab, run: LabRun) -> tuple[dict | None, bytes | None]:
    """A run's result and model bytes as far as the driver has them (the worker needs no shared folder)."""
    path, model = lab.result_path(run), lab.model_path(run)
    result = read_result(path) if path.is_file() else None
    return result, (model.read_bytes() if model.is_file() else None)


def _last_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def require_ray():
    """The ``ray`` module, or one clear error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--executor ray needs Ray: pip install 'mlpvision[cluster]' (or pip install 'ray[default]')"
        ) from None
    return ray


def _local(address: str | None = None, cpus_per_run: float = 1) -> LocalExecutor:
    if address:
        raise ConfigError("--address names a Ray cluster: use it with --executor ray")
    return LocalExecutor()


def _ray(address: str | None = None, cpus_per_run: float = 1) -> RayExecutor:
    require_ray()
    return RayExecutor(address=address, cpus_per_run=cpus_per_run)


EXECUTORS: dict[str, Callable[..., Executor]] = {"local": _local, "ray": _ray}


def make_executor(name: str, address: str | None = None, cpus_per_run: float = 1) -> Executor:
    """The executor called ``name`` (a key of :data:`EXECUTORS`)."""
    if name not in EXECUTORS:
        raise ConfigError(f"unknown executor {name!r}; choose from {', '.join(EXECUTORS)}")
    return EXECUTORS[name](address=address, cpus_per_run=cpus_per_run)
