"""The training engine: data -> model -> optimizer -> epochs of ``train_one_epoch`` / ``evaluate``.

Everything random is derived from (seed, epoch, step, index): per-image augmentation, batch order, MixUp and
dropout. With checkpoints written atomically at step boundaries, a run killed at any moment and resumed ends
with exactly the weights of an uninterrupted run (on CPU), and a DistributedDataParallel run sees the same
batches as a single process with the same global batch.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader

from ..data import (
    Augmented,
    DataInfo,
    build_transform,
    load_split,
    resolve_data_config,
    seeded_subset,
    split_train_val,
    training_set,
)
from ..errors import ConfigError, DataError, MlpVisionError
from ..io import (
    MODEL_NAME_KEY,
    RunLock,
    copy_file,
    data_metadata,
    load_checkpoint,
    output_folder,
    read_metadata,
    remove_stale_temporaries,
    save_model,
    saved_data,
    write_json,
)
from ..models import create_model, get_spec
from ..reparam import check_deploy_form, needs_fusion, reparameterize
from . import distributed
from .config import RESUMABLE_CHANGES, TrainConfig
from .distill import distillation_loss, load_teacher
from .ema import build_ema, recompute_bn_stats
from .evaluate import save_confusion_png
from .finetune import load_for_finetuning
from .metrics import write_metrics
from .schedule import build_mixing, build_optimizer, build_scheduler, epoch_batches, step_seed, total_steps
from .state import LoopState, load_training_checkpoint, save_training_checkpoint, saved_train_config
from .task import get_task

__all__ = [
    "RUN_FILES",
    "Data",
    "Run",
    "TrainingError",
    "build_data",
    "run_data",
    "train",
    "train_one_epoch",
    "validation_split",
]

log = logging.getLogger(__name__)


class TrainingError(MlpVisionError):
    """Training cannot go on (e.g. the loss became NaN); the last good checkpoint is kept. A run that failed: the
    command line exits with status 1."""

    exit_code = 1


class TrainingStopped(MlpVisionError):
    """A run stopped by SIGTERM or SIGINT (Ctrl-C) after finishing its current step and saving its state: ``--resume``
    continues it exactly. The command line exits with 128 + the signal's number (143, 130), as a killed process
    would."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


# signals that stop a run cleanly (at the end of its current step, state saved); a second one acts at once
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


# ---- building blocks -------------------------------------------------------------------------------------------


@dataclass
class Data:
    info: DataInfo
    train: Augmented
    val: Augmented | None
    test: Augmented
    bn_images: Augmented | None = None  # unaugmented training images for the EMA's BatchNorm statistics


def build_data(cfg: TrainConfig, img_size: int | None, in_chans: int | None) -> Data:
    """The run's splits: training (augmented; a seeded subset when asked), validation held out of the training
    set, test (a fixed subset when asked), and the images that recompute the EMA's BatchNorm statistics."""
    train_raw, info = load_split(cfg.data, "train", cfg.data_dir, img_size, in_chans)
    test_raw, _ = load_split(cfg.data, "test", cfg.data_dir, img_size, in_chans)
    info = init_normalisation(cfg, info)
    n = len(train_raw)
    asked = cfg.val_size is not None  # else sized to the run (TrainConfig.resolved_val_size)
    if asked and cfg.val_size >= n:  # asked for: never cut quietly
        raise DataError(f"val_size {cfg.val_size} leaves no training images: {cfg.data} has {n} (use at most {n // 5})")
    val_size = min(cfg.resolved_val_size, n // 5)
    if val_size < cfg.resolved_val_size:
        log.warning(
            "validation: %d of the %d training images (val_size %d is capped at a fifth)",
            val_size,
            n,
            cfg.resolved_val_size,
        )
    train_idx, val_idx = split_train_val(n, val_size, cfg.seed)
    if cfg.train_subset > len(train_idx):
        raise DataError(
            f"train_subset {cfg.train_subset} is more than the {len(train_idx)} training images left after validation"
        )
    if cfg.train_subset:
        train_idx = seeded_subset(train_idx, cfg.train_subset, cfg.seed + 1).sort().values
    plain = build_transform(info, None)
    if cfg.task == "segment":  # images and masks are augmented together, per batch (Segmentation.augment)
        train = Augmented(train_raw, train_idx, plain)
    else:
        train = training_set(train_raw, train_idx, info, cfg.aug, cfg.seed)
    val = Augmented(train_raw, val_idx, plain) if len(val_idx) else None
    test_idx = None
    if cfg.test_subset and cfg.test_subset < len(test_raw):
        test_idx = seeded_subset(torch.arange(len(test_raw)), cfg.test_subset, 0).sort().values
    bn_images = None
    if cfg.ema_bn_images:
        bn_images = Augmented(train_raw, seeded_subset(train_idx, cfg.ema_bn_images, cfg.seed + 2), plain)
    return Data(info, train, val, Augmented(test_raw, test_idx, plain), bn_images)


def init_normalisation(cfg: TrainConfig, info: DataInfo) -> DataInfo:
    """The data set's normalisation, or, when fine-tuning weights that record none of their own (converted or
    plain weights), the one their ``pretrained_cfg`` names: the images those weights learned from were normalised
    that way (timm's fine-tuning does the same)."""
    if cfg.init is None or saved_data(cfg.init).get("mean"):
        return info
    if read_metadata(cfg.init).get(MODEL_NAME_KEY) is not None:
        data_cfg = resolve_data_config(model_file=cfg.init)
    else:
        data_cfg = resolve_data_config(create_model(cfg.model, device="meta", in_chans=info.in_chans))
    if len(data_cfg.mean) != info.in_chans:
        return info
    log.info("normalising with the initial weights' statistics: mean %s, std %s", data_cfg.mean, data_cfg.std)
    return dataclasses.replace(info, mean=data_cfg.mean, std=data_cfg.std)


def build_model(cfg: TrainConfig, info: DataInfo) -> nn.Module:
    """The model to train: fine-tuned from ``cfg.init`` when given, else built for the data's shape."""
    if cfg.init is not None and read_metadata(cfg.init).get(MODEL_NAME_KEY) is None:
        # plain weights (timm's keys, or another tool's file): the run's model, its head sized for our classes
        return load_for_finetuning(
            cfg.init, cfg.model, info.num_classes, cfg.img_size, in_chans=info.in_chans, model_args=cfg.model_args
        )
    if cfg.init is not None:  # a model trained on another data set brings its classes, not ours: a new head
        other_task = saved_data(cfg.init).get("name", cfg.data) != cfg.data
        return load_for_finetuning(cfg.init, cfg.model, info.num_classes, cfg.img_size, new_head=other_task)
    args = {"num_classes": info.num_classes, "in_chans": info.in_chans, "img_size": info.img_size}
    return create_model(cfg.model, **{**args, **cfg.model_args})


# ---- the run ---------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """Everything one training run holds."""

    cfg: TrainConfig
    dist: distributed.DistInfo
    data: Data
    model: nn.Module  # the bare model (DDP wraps it in ``engine``)
    engine: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    ema: AveragedModel | None
    teacher: nn.Module | None
    mixing: Callable | None
    out: Path
    loop: LoopState
    steps_per_epoch: int
    last_step: int | None  # the global step the run ends at when ``max_steps`` is set
    progress: Callable[[dict], None] | None = None
    task: Any = None  # what is learnt (train.task): the loss, the training hits, evaluation, the best-model figure
    stop_signal: int | None = None  # set by a stop signal (SIGTERM, SIGINT): the run saves and ends after its step
    replaced: Path | None = None  # the earlier run's files, set aside by --overwrite until this run's first save
    # (global step, EMA copy with recomputed statistics): evaluation and saving at one step share the copy
    _recomputed: tuple[int, nn.Module] | None = field(default=None, init=False, repr=False)

    @property
    def at_last_step(self) -> bool:
        """Whether the run has done the global step its ``max_steps`` ends it at."""
        return self.last_step is not None and self.loop.global_step >= self.last_step

    @property
    def eval_model(self) -> nn.Module:
        """The model that is evaluated and saved: the EMA when on (with recomputed BatchNorm statistics when
        asked), else the trained model."""
        if self.ema is None:
            return self.model
        if self.data.bn_images is None:
            return self.ema.module
        if self._recomputed is None or self._recomputed[0] != self.loop.global_step:
            with torch.random.fork_rng(devices=[]):  # iterating a DataLoader draws from the global generator
                model = recompute_bn_stats(copy.deepcopy(self.ema.module), self.eval_loader(self.data.bn_images))
            self._recomputed = (self.loop.global_step, model)
        return self._recomputed[1]

    @property
    def black(self) -> torch.Tensor:
        """A black pixel after normalisation, per channel (what a padded border holds)."""
        info = self.data.info
        return -torch.tensor(info.mean) / torch.tensor(info.std)

    @property
    def title(self) -> str:
        """What the run's figures say they show: model, data and run folder."""
        subset = f", {self.cfg.train_subset} training images" if self.cfg.train_subset else ""
        return f"{self.cfg.model} on {self.data.info.name}{subset} (run {self.out.resolve().name})"

    @property
    def data_metadata(self) -> dict[str, str]:
        info = self.data.info
        return data_metadata(info.name, info.classes, info.mean, info.std)

    def loader(self, dataset, batches: list[torch.Tensor]) -> DataLoader:
        return DataLoader(dataset, batch_sampler=[b.tolist() for b in batches], num_workers=self.cfg.workers)

    def eval_loader(self, dataset) -> DataLoader:
        return DataLoader(dataset, batch_size=256, shuffle=False, num_workers=self.cfg.workers)

    def save(self) -> None:
        if self.dist.is_main:
            save_training_checkpoint(
                self.out / "last.safetensors",
                self.model,
                self.optimizer,
                self.scheduler,
                self.loop,
                self.cfg.as_dict(),
                self.ema,
            )
            if self.replaced is not None:  # this run can now be resumed: the run it replaces goes
                shutil.rmtree(self.replaced, ignore_errors=True)
                self.replaced = None
        distributed.barrier(self.dist)


def run_data(cfg: TrainConfig) -> Data:
    """The run's data, read and checked (labels, class lists, sizes): image folders are decoded at the model's size;
    other data sets keep their own size unless asked."""
    spec_cfg = get_spec(cfg.model).config
    img_size = (
        cfg.img_size or cfg.model_args.get("img_size") or (spec_cfg.img_size if cfg.data == "imagefolder" else None)
    )
    return build_data(cfg, img_size, cfg.model_args.get("in_chans", spec_cfg.in_chans))


def validation_split(cfg: TrainConfig) -> tuple[Augmented, DataInfo]:
    """The validation images run ``cfg`` held out of its training set (the same images, seed and size), for
    re-measuring a run's reported validation accuracy.

    Raises:
        ConfigError: the run held out no validation images.
    """
    data = run_data(cfg) if cfg.resolved_val_size else None
    if data is None or data.val is None:
        raise ConfigError("this run held out no validation images (val_size 0)")
    return data.val, data.info


def build_run(
    cfg: TrainConfig, dist: distributed.DistInfo, progress: Callable[[dict], None] | None, data: Data | None = None
) -> Run:
    """Data (unless given), model, optimizer, schedule, EMA and teacher of a run, before any checkpoint is
    restored."""
    torch.manual_seed(cfg.seed)
    data = data if data is not None else run_data(cfg)
    model = build_model(cfg, data.info).to(dist.device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    engine = model
    if dist.distributed:
        ids = [dist.device.index] if dist.device.type == "cuda" else None
        engine = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if cfg.compile:  # the training step only: evaluation and saving use the plain model (same weights)
        if not torch.cuda.is_available():  # the compiler's probe for a CUDA toolkit is noise on a CPU-only machine
            logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        engine = torch.compile(engine)
    optimizer = build_optimizer(cfg, model)
    steps_per_epoch = len(data.train) // cfg.batch_size
    scheduler = build_scheduler(cfg, optimizer, max(steps_per_epoch, 1))
    last_step = total_steps(cfg, max(steps_per_epoch, 1)) if cfg.max_steps > 0 else None
    ema = build_ema(model, cfg.ema_decay, cfg.ema_warmup)
    teacher = load_teacher(cfg.teacher_files, dist.device, data.info.num_classes)
    mixing = build_mixing(cfg, data.info.num_classes)
    task = get_task(cfg.task, getattr(data.train.base, "ignore_index", None))
    task.check(model, data.train.base[0][1], data.info.num_classes, data.info.name)
    return Run(
        cfg,
        dist,
        data,
        model,
        engine,
        optimizer,
        scheduler,
        ema,
        teacher,
        mixing,
        Path(cfg.out),
        LoopState(),
        steps_per_epoch,
        last_step,
        progress,
        task,
    )


# ---- one epoch -------------------------------------------------------------------------------------------------


def _micro_batches(run: Run, epoch: int) -> tuple[int, list[torch.Tensor]]:
    """The number of optimizer steps in ``epoch`` and this process's micro-batches from the current step on."""
    cfg, dist = run.cfg, run.dist
    batches = epoch_batches(len(run.data.train), cfg.batch_size, cfg.seed, epoch)
    if not batches:
        raise ConfigError(f"batch size {cfg.batch_size} exceeds the {len(run.data.train)} training images")
    # this process's share of each global batch, split into micro-batches
    per_rank = cfg.batch_size // (dist.world_size * cfg.accum_steps)
    if per_rank * dist.world_size * cfg.accum_steps != cfg.batch_size:
        raise ConfigError(f"batch size {cfg.batch_size} is not divisible by processes x accumulation steps")
    share = per_rank * cfg.accum_steps
    micro = []
    for b in batches[run.loop.step_in_epoch :]:
        micro.extend(b[dist.rank * share : (dist.rank + 1) * share].split(per_rank))
    return len(batches), micro


def _loss(run: Run, images: torch.Tensor, targets: torch.Tensor, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and training loss of one micro-batch: cross-entropy, plus distillation when a teacher is set."""
    cfg = run.cfg
    logits = run.engine(images)
    loss = run.task.loss(logits, targets, cfg.label_smoothing)
    if run.teacher is not None:
        with torch.no_grad():
            t_logits = run.teacher(images).float()
        kd = distillation_loss(logits.float(), t_logits, cfg.distill, cfg.distill_tau)
        loss = (1 - cfg.distill_alpha) * loss + cfg.distill_alpha * kd
    if not torch.isfinite(loss):
        last = run.out / "last.safetensors"
        kept = f"{last} holds the last good state" if last.is_file() else "no checkpoint had been written yet"
        raise TrainingError(
            f"the loss became {loss.item()} at epoch {epoch + 1}, step {run.loop.global_step + 1}; training stopped "
            f"and {kept} (lower --lr or set --grad-clip)"
        )
    return logits, loss


def _optimizer_step(run: Run, step_micro: list[torch.Tensor], it, epoch: int) -> tuple[float, int, int]:
    """One optimizer step over its micro-batches; returns (summed loss, correct predictions, predictions, images):
    a prediction is an image's label, or a labelled pixel's when segmenting."""
    cfg, dist = run.cfg, run.dist
    torch.manual_seed(step_seed(cfg.seed, run.loop.global_step, dist.rank))  # dropout, drop path, MixUp
    run.optimizer.zero_grad(set_to_none=True)
    loss_sum, correct, seen, n_images = 0.0, 0, 0, 0
    for a, idx in enumerate(step_micro):
        images, labels = next(it)
        if run.data.train.batch_aug is not None:
            images = run.data.train.batch_aug(images, idx)
        images, labels = run.task.augment(images, labels, cfg.aug, run.black)
        images, labels = images.to(dist.device, non_blocking=True), labels.to(dist.device, non_blocking=True)
        targets = labels
        if run.mixing is not None:
            images, targets = run.mixing(images, labels)
        if cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        sync = a == cfg.accum_steps - 1 or not dist.distributed
        with (
            run.engine.no_sync() if not sync else contextlib.nullcontext(),
            torch.autocast(dist.device.type, dtype=torch.bfloat16, enabled=cfg.amp),
        ):
            logits, loss = _loss(run, images, targets, epoch)
        (loss / cfg.accum_steps).backward()
        right, count = run.task.hits(logits, labels)
        loss_sum += loss.item() * count
        correct += right
        seen += count
        n_images += len(images)
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.engine.parameters(), cfg.grad_clip)
    run.optimizer.step()
    run.scheduler.step()
    if run.ema is not None:
        run.ema.update_parameters(run.model)
    run.loop.global_step += 1
    return loss_sum, correct, seen, n_images


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _bank(run: Run, since: tuple[float, float]) -> None:
    """Adds the wall and CPU time since ``since`` (:func:`_clocks`) to the run's training time."""
    run.loop.elapsed_s += time.perf_counter() - since[0]
    if run.loop.cpu_s is not None:  # None: resumed from a checkpoint that did not count it
        run.loop.cpu_s += time.process_time() - since[1]


def train_one_epoch(run: Run, epoch: int, deadline: float | None) -> dict:
    """Trains one epoch from ``run.loop.step_in_epoch`` (or up to ``run.last_step``); returns the epoch's training
    metrics."""
    cfg, dist = run.cfg, run.dist
    run.engine.train()
    run.data.train.set_epoch(epoch)
    steps, micro = _micro_batches(run, epoch)
    first_step = run.loop.step_in_epoch
    # the sums of the steps done before a resume in this epoch's middle, else none
    sums = run.loop.epoch_sums if first_step > 0 else {}
    loss_sum, correct, seen = sums.get("loss", 0.0), int(sums.get("hits", 0)), int(sums.get("seen", 0))
    n_images, earlier_s = int(sums.get("images", 0)), sums.get("seconds", 0.0)
    epoch_t0 = time.perf_counter() - earlier_s
    banked = _clocks()  # the start of the time not yet added to elapsed_s and cpu_s
    it = iter(run.loader(run.data.train, micro))
    for step_idx in range(first_step, steps):
        offset = (step_idx - first_step) * cfg.accum_steps
        step = _optimizer_step(run, micro[offset : offset + cfg.accum_steps], it, epoch)
        loss_sum, correct, seen = loss_sum + step[0], correct + int(step[1]), seen + int(step[2])
        n_images += step[3]
        run.loop.step_in_epoch = step_idx + 1
        run.loop.epoch_sums = {
            "loss": loss_sum,
            "hits": correct,
            "seen": seen,
            "images": n_images,
            "seconds": time.perf_counter() - epoch_t0,
        }
        if run.progress is not None and dist.is_main:
            seconds = time.perf_counter() - epoch_t0
            images = n_images * dist.world_size
            run.progress(
                {
                    "phase": "train",
                    "epoch": epoch,
                    "step": step_idx + 1,
                    "steps": steps,
                    "loss": step[0] / max(step[2], 1),
                    "images": images,
                    "seconds": seconds,
                }
            )
        if run.stop_signal is not None and not _epoch_ended(run):  # the end of an epoch stops after its records
            break
        if cfg.save_every_steps and run.loop.global_step % cfg.save_every_steps == 0:
            _bank(run, banked)
            run.save()
            banked = _clocks()  # writing checkpoints does not count as training time
        if deadline is not None and run.loop.elapsed_s + (time.perf_counter() - banked[0]) >= deadline:
            break
        if run.at_last_step:
            break
    _bank(run, banked)
    seconds = time.perf_counter() - epoch_t0
    return {
        "train_loss": loss_sum / max(seen, 1),
        run.task.train_hits_name: 100.0 * correct / max(seen, 1),
        "epoch_seconds": seconds,
        "img_per_s": n_images * dist.world_size / max(seconds, 1e-9),
    }


def _eval_progress(run: Run, phase: str, epoch: int) -> Callable[[int, int], None] | None:
    """A per-batch callback of :func:`evaluate` that reports ``phase`` ("validate", "test final", ...) to the
    run's progress display."""
    if run.progress is None or not run.dist.is_main:
        return None
    t0 = time.perf_counter()

    def report(done: int, total: int) -> None:
        seconds = time.perf_counter() - t0
        row = {"phase": phase, "epoch": epoch, "step": done, "steps": total, "loss": None}
        run.progress({**row, "images": done, "seconds": seconds})

    return report


def _end_of_epoch(run: Run, epoch: int, metrics: dict, writer) -> None:
    """Validates (keeping the best model), logs and records the epoch's row; the main process only."""
    cfg, data, opt = run.cfg, run.data, run.optimizer
    row = {"epoch": epoch + 1, "step": run.loop.global_step, "lr": opt.param_groups[0]["lr"], **metrics}
    last = epoch + 1 >= cfg.epochs or run.at_last_step
    if data.val is not None and ((epoch + 1) % cfg.val_every == 0 or last):
        t0 = time.perf_counter()
        model, loader, report = run.eval_model, run.eval_loader(data.val), _eval_progress(run, "validate", epoch)
        val = run.task.evaluate(model, loader, data.info.num_classes, run.dist.device, cfg.amp, progress=report)
        row.update(run.task.columns("val", val))
        row["val_seconds"] = time.perf_counter() - t0
        # best_val_top1 holds the task's figure (top-1, or mean IoU when segmenting)
        if val.score > run.loop.best_val_top1:
            run.loop.best_val_top1, run.loop.best_epoch = val.score, epoch + 1
            save_model(run.eval_model, run.out / "best.safetensors", run.data_metadata)
    log.info("epoch %d: %s", epoch + 1, ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch"))
    run.loop.history.append(row)
    write_metrics(run.out, run.loop.history, cfg.plots, title=run.title)
    if writer is not None:
        for k, v in row.items():
            if k not in ("epoch", "step"):
                writer.add_scalar(k, v, run.loop.global_step)
        writer.flush()


# ---- the whole run ---------------------------------------------------------------------------------------------


# the files of a run that a fresh start would replace
RUN_FILES = ("model.safetensors", "best.safetensors", "last.safetensors", "summary.json")
# everything else a run writes into its folder; a start afresh with ``overwrite`` removes these and RUN_FILES first
RUN_OUTPUTS = ("config.json", "metrics.csv", "metrics.json", "curves.png", "confusion.png", "*_deploy.safetensors")


def _check_out(cfg: TrainConfig, resume: bool, overwrite: bool) -> None:
    """Refuses a run folder that holds another run unless told what to do with it: ``resume`` continues its
    ``last.safetensors``, ``overwrite`` replaces it; a finished run is never replaced silently."""
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder")
    if overwrite or not out.is_dir():
        return
    if (out / REPLACED).is_dir():
        raise ConfigError(
            f"{out / REPLACED} holds a run an --overwrite start set aside and was stopped before it saved: move its "
            f"files back into {out} to keep that run (then --resume it), or pass --overwrite to replace it"
        )
    present = [f for f in RUN_FILES if (out / f).is_file()]
    if resume:
        if "last.safetensors" in present:
            return
        # nothing to continue: a start afresh may replace a partial run, never a finished one
        present = [f for f in present if f in ("model.safetensors", "summary.json")]
    if present:
        hint = "--resume to continue it, " if "last.safetensors" in present else ""
        raise ConfigError(
            f"{out} already holds a run ({', '.join(present)}); pass {hint}--overwrite to replace it, or choose "
            "another --out"
        )


def train(
    cfg: TrainConfig,
    resume: bool = False,
    progress: Callable[[dict], None] | None = None,
    overwrite: bool = False,
) -> dict:
    """Runs (or resumes) a training run and returns its summary; files go to ``cfg.out``.

    Everything that can be checked is checked before the run folder is created or touched: the options, the data
    (labels, class lists, sizes) and what the folder holds (a run there is continued only with ``resume`` and
    replaced only with ``overwrite``).

    Writes ``last.safetensors`` (resumable state), ``model.safetensors`` (final weights, EMA when on),
    ``best.safetensors`` (best validation top-1), the deploy form of both when the model re-parameterizes,
    ``config.json``, ``metrics.csv/json``, ``curves.png``, ``confusion.png`` and ``summary.json``.
    """
    cfg.validate()
    get_spec(cfg.model)  # an unknown name fails before any data is read
    _check_out(cfg, resume, overwrite)
    dist = distributed.setup(cfg.device)
    if cfg.amp is None:  # config.json then records the precision the run used
        cfg = dataclasses.replace(cfg, amp=cfg.amp_on(dist.device))
    try:
        data = run_data(cfg)  # read and checked before the run folder is created
        _check_model(cfg, data)  # so is the model: built without memory, and paired with the data
        if cfg.val_size is None:  # config.json records the validation images the run held out too
            cfg = dataclasses.replace(cfg, val_size=cfg.resolved_val_size)
        # one training per folder: the main process holds its lock from before anything is written until the end
        with RunLock(output_folder(cfg.out)) if dist.is_main else contextlib.nullcontext() as lock:
            if lock is not None and lock.stale_owner:
                log.info("%s: took over the lock of process %d, which has ended", cfg.out, lock.stale_owner)
            _check_out(cfg, resume, overwrite)  # again, now that no other process can write there
            if resume:
                _check_resumable(cfg)
            run = build_run(cfg, dist, progress, data)
            try:
                _start_or_resume(run, resume, overwrite)
                with _stop_signals(run):
                    stopped_early = _epochs(run)
            except BaseException:
                try:
                    _put_back(run)  # failed before its first save: the earlier run it was to replace is restored
                except OSError as e:
                    log.error("%s: could not put the earlier run back from %s (%s)", run.out, REPLACED, e)
                raise
            return _finish(run, stopped_early)
    finally:
        distributed.cleanup(dist)


def _check_model(cfg: TrainConfig, data: Data) -> None:
    """Builds the run's model on the meta device (no memory, no weights) and pairs it with the data, so a config
    the model cannot be built from, or a model that does not fit the data's task or classes, is refused before
    the run folder is made. A fine-tuning start (``--init``) is checked when it is loaded."""
    if cfg.init is not None:
        return
    args = {"num_classes": data.info.num_classes, "in_chans": data.info.in_chans, "img_size": data.info.img_size}
    model = create_model(cfg.model, device="meta", **{**args, **cfg.model_args})
    task = get_task(cfg.task, getattr(data.train.base, "ignore_index", None))
    task.check(model, data.train.base[0][1], data.info.num_classes, data.info.name)


def _check_resumable(cfg: TrainConfig) -> None:
    """Refuses to resume ``OUT/last.safetensors`` with a config that would change the remaining steps."""
    last = Path(cfg.out) / "last.safetensors"
    if not last.is_file():
        return
    conflicts = cfg.resume_conflicts(saved_train_config(last))
    if conflicts:
        changes = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in conflicts.items())
        raise ConfigError(
            f"--resume would change what {last} was training ({changes}); resume with its own settings "
            f"(only {', '.join(sorted(RESUMABLE_CHANGES))} may change), or start a new run in another --out"
        )


def _start_or_resume(run: Run, resume: bool, overwrite: bool = False) -> None:
    """Restores ``last.safetensors`` when resuming, else starts afresh (with ``overwrite``: after removing the
    earlier run's outputs, so none of them can pass for this run's); writes the resolved config.json."""
    last = run.out / "last.safetensors"
    if run.dist.is_main:
        for tmp in remove_stale_temporaries(run.out):  # left by a writer that was killed mid-write
            log.info("removed %s, a partial file of an interrupted write", tmp)
    if resume and last.is_file():
        run.loop = load_training_checkpoint(last, run.model, run.optimizer, run.scheduler, run.ema)
        log.info("resumed from %s at epoch %d, step %d", last, run.loop.epoch + 1, run.loop.global_step)
    elif run.dist.is_main and overwrite:
        run.replaced = _set_aside(run.out)
    elif run.dist.is_main and last.is_file():
        log.warning("%s exists and will be overwritten (pass --resume to continue it)", last)
    if run.dist.is_main:
        write_json(run.out / "config.json", run.cfg.as_dict())


REPLACED = ".replaced"  # OUT/.replaced: the files of the run an --overwrite start replaces, until its first save


def _run_files(out: Path) -> list[Path]:
    return sorted({p for pattern in RUN_FILES + RUN_OUTPUTS for p in out.glob(pattern) if p.is_file()})


def _set_aside(out: Path) -> Path | None:
    """Moves the earlier run's files into ``OUT/.replaced`` (so none of them can pass for the new run's) until the
    new run's first checkpoint; a start that fails before it puts them back (:func:`_put_back`). A folder already
    set aside by a start that never saved holds the earlier run: the files beside it are that start's, and go."""
    aside = out / REPLACED
    if aside.is_dir() and not any((out / f).is_file() for f in RUN_FILES):
        for path in _run_files(out):  # the outputs of the start that was stopped
            path.unlink()
        return aside
    if aside.is_dir():  # a run saved beside it since: that run is the earlier one, and this one replaces it
        shutil.rmtree(aside)
    earlier = _run_files(out)
    if not earlier:
        return None
    aside.mkdir()
    for path in earlier:
        path.rename(aside / path.name)
    log.warning("%s: replacing the earlier run (%s, kept in %s until this run's first checkpoint)", out,
                ", ".join(p.name for p in earlier), aside)  # fmt: skip
    return aside


def _put_back(run: Run) -> None:
    """Restores the files :func:`_set_aside` moved, after removing what the failed start wrote."""
    aside = run.replaced
    if aside is None or not run.dist.is_main:
        return
    for path in _run_files(run.out):
        path.unlink()
    for path in aside.iterdir():
        path.rename(run.out / path.name)
    aside.rmdir()
    run.replaced = None
    log.warning("%s: the new run failed before its first checkpoint; the earlier run's files are back", run.out)


def _epochs(run: Run) -> bool:
    """Trains epoch after epoch until the run ends; True when the time limit stopped it before its last epoch."""
    cfg = run.cfg
    deadline = cfg.time_limit_min * 60 if cfg.time_limit_min > 0 else None
    writer = _tensorboard_writer(run.out) if cfg.tensorboard and run.dist.is_main else None
    while run.loop.epoch < cfg.epochs and not run.at_last_step:
        epoch = run.loop.epoch
        metrics = train_one_epoch(run, epoch, deadline)
        if run.stop_signal is not None and not _epoch_ended(run):  # mid-epoch: save where it is, nothing else
            run.save()
            _stop(run, f"at epoch {epoch + 1}, step {run.loop.step_in_epoch} of {run.steps_per_epoch}")
        if run.dist.is_main:
            _end_of_epoch(run, epoch, metrics, writer)
        if run.loop.step_in_epoch >= run.steps_per_epoch:
            run.loop.epoch, run.loop.step_in_epoch, run.loop.epoch_sums = epoch + 1, 0, {}
        run.save()
        if run.stop_signal is not None:  # it came during the epoch's last step or its validation and records
            _stop(run, f"after epoch {epoch + 1} of {cfg.epochs}")
        if deadline is not None and run.loop.elapsed_s >= deadline:
            return run.loop.epoch < cfg.epochs
    return False


def _epoch_ended(run: Run) -> bool:
    """Whether the current epoch has done its last step (or the run its ``max_steps``)."""
    return run.loop.step_in_epoch >= run.steps_per_epoch or run.at_last_step


def _stop(run: Run, where: str) -> None:
    """Ends a run that a stop signal asked to stop, once its state is saved."""
    name = signal.Signals(run.stop_signal).name
    raise TrainingStopped(
        f"stopped by {name} {where}; its state is saved in {run.out / 'last.safetensors'}: --resume continues it",
        run.stop_signal,
    )


@contextlib.contextmanager
def _stop_signals(run: Run):
    """While training, the first SIGTERM or SIGINT asks the run to stop after its current step, with its state saved
    (:class:`TrainingStopped`); a second one acts at once (SIGINT: KeyboardInterrupt, SIGTERM: the process ends).

    Only in a single process, from the main thread: in a distributed run the processes would have to agree on the
    step to stop at, and a launcher that stops the group because one process died would wait for the others' steps.
    There a signal acts at once, and ``--resume`` continues from the last checkpoint."""
    if run.dist.world_size > 1 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def ask(signum, frame) -> None:
        if run.stop_signal is not None:  # the second signal: stop now
            _restore()
            signal.raise_signal(signum)
            return
        run.stop_signal = signum
        log.warning(
            "%s: stopping after this step (the state is saved); send it again to stop at once",
            signal.Signals(signum).name,
        )

    # a signal the process was told to ignore (nohup, a background job of a script) stays ignored
    previous = {s: signal.signal(s, ask) for s in STOP_SIGNALS if signal.getsignal(s) is not signal.SIG_IGN}

    def _restore() -> None:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)  # None: not set from Python

    try:
        yield
    finally:
        _restore()


def _tensorboard_writer(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("--tensorboard: the tensorboard package is not installed; metrics go to CSV and JSON only")
        return None
    return SummaryWriter(str(out / "tensorboard"))


def _save_deploy_forms(run: Run, models: dict[str, nn.Module]) -> dict[str, str]:
    """Saves ``NAME_deploy.safetensors`` for each model that re-parameterizes, verified against its train form."""
    info = run.data.info
    x = torch.randn(4, info.in_chans, info.img_size, info.img_size, generator=torch.Generator().manual_seed(0))
    deployed = {}
    for name, m in models.items():
        if needs_fusion(m):
            fused = reparameterize(m.eval())
            with torch.no_grad():
                check_deploy_form(m, fused, x.to(run.dist.device), what=f"the deploy form of {name}")
            path = run.out / f"{name}_deploy.safetensors"
            save_model(fused, path, run.data_metadata)
            deployed[name] = str(path)
    return deployed


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    """Whether two models hold the same parameters and buffers, bit for bit."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        sa[k].shape == sb[k].shape and torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa
    )


def _finish(run: Run, stopped_early: bool) -> dict:
    """Saves the final and deploy-form models, evaluates them on the test split, writes summary.json."""
    cfg, dist, data, out = run.cfg, run.dist, run.data, run.out
    summary: dict[str, Any] = {}
    if dist.is_main:
        final, best_path = run.eval_model, out / "best.safetensors"
        if data.val is None:  # nothing to select on: the final model is the best one
            save_model(final, best_path, run.data_metadata)
        best = load_checkpoint(best_path, device=dist.device)
        best_is_final = same_weights(best, final)
        if best_is_final:  # the same weights, name and metadata: the same bytes
            copy_file(best_path, out / "model.safetensors")
        else:
            save_model(final, out / "model.safetensors", run.data_metadata)
        test_loader = run.eval_loader(data.test)
        epoch = max(run.loop.epoch - 1, 0)
        t0 = time.perf_counter()
        # the reported figures are the model's own, in float32, whatever autocast training used
        test = run.task.evaluate(
            final, test_loader, data.info.num_classes, dist.device, progress=_eval_progress(run, "test", epoch)
        )
        test_best = test
        if not best_is_final:  # the test set is evaluated once when the best model is the final one
            report = _eval_progress(run, "test best", epoch)
            test_best = run.task.evaluate(best, test_loader, data.info.num_classes, dist.device, progress=report)
        test_seconds = time.perf_counter() - t0
        if cfg.plots:
            which = "best-on-validation model" if test_best is not test else "final model"
            title = f"{run.title}\ntest split, {which}"
            save_confusion_png(test_best.confusion, data.info.classes, out / "confusion.png", title=title)
        deployed = _save_deploy_forms(run, {"model": final} if best_is_final else {"model": final, "best": best})
        if best_is_final and "model" in deployed:
            deployed["best"] = str(copy_file(deployed["model"], out / "best_deploy.safetensors"))
        plots = {"curves": str(out / "curves.png"), "confusion": str(out / "confusion.png")} if cfg.plots else {}
        summary = {
            "model": cfg.model,
            "data": cfg.data,
            "epochs_done": run.loop.epoch + (run.loop.step_in_epoch > 0),
            "steps": run.loop.global_step,
            "stopped_by_time_limit": stopped_early,
            "train_seconds": run.loop.elapsed_s,
            # CPU time of this process (its threads, not DataLoader worker processes) while it trained; None for a
            # run resumed from a checkpoint that did not count it
            "train_cpu_seconds": run.loop.cpu_s,
            "val_seconds": sum(row.get("val_seconds", 0.0) for row in run.loop.history),
            "test_seconds": test_seconds,
            "val_images": len(data.val) if data.val is not None else 0,
            "test_images": len(data.test),
            "best_is_final": test_best is test,
            "best_epoch": run.loop.best_epoch,
            f"best_val_{run.task.score_name}": run.loop.best_val_top1 if data.val is not None else None,
            **run.task.summary(test, test_best),
            "params": sum(p.numel() for p in final.parameters()),
            "out": str(out),
            "files": {
                "model": str(out / "model.safetensors"),
                "best": str(out / "best.safetensors"),
                **plots,
                **{f"{k}_deploy": v for k, v in deployed.items()},
            },
        }
        write_json(out / "summary.json", summary)
    distributed.barrier(dist)
    return summary
