"""Training checkpoints as safetensors: model, EMA, optimizer, scheduler and loop state, written atomically.

Tensors go into the safetensors body; everything else (optimizer hyper-parameters, scheduler state, counters,
history) into its JSON metadata. Nothing is pickled, so a checkpoint can never execute code when read.
"""

from __future__ import annotations

import json
import math
import os
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError, brief
from ..io import MODEL_NAME_KEY, model_metadata, read_metadata, read_safetensors, write_safetensors
from ..io.files import parse_json
from ..io.weights import check_finite

__all__ = ["LoopState", "load_training_checkpoint", "save_training_checkpoint", "saved_train_config"]

STATE_KEY = "mlpvision.train_state"
TRAIN_CONFIG_KEY = "mlpvision.train_config"


@dataclass
class LoopState:
    """Where the training loop is; enough to continue exactly."""

    epoch: int = 0  # current epoch (0-based)
    step_in_epoch: int = 0  # optimizer steps already done in this epoch
    global_step: int = 0  # optimizer steps since the start
    best_val_top1: float = -1.0
    best_epoch: int = -1
    history: list[dict[str, float | None]] = field(default_factory=list)  # one row of metrics per finished epoch
    # the current epoch's training sums over its steps so far (loss, hits, predictions, images, seconds): a run
    # resumed in the middle of an epoch records the whole epoch, as if it had not stopped
    epoch_sums: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0  # training wall time so far, across resumes
    # the same spans' CPU time of this process (its threads; not while it is stopped); None once resumed from a
    # checkpoint that did not count it
    cpu_s: float | None = 0.0


def _optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{idx}.{k}"] = v
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_from_flat(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    for key, v in meta.get("scalars", {}).items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def save_training_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    loop: LoopState,
    train_config: dict,
    ema: nn.Module | None = None,
) -> Path:
    """Writes everything needed to resume, atomically (temporary file, then rename)."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    opt_tensors, opt_meta = _optimizer_to_flat(optimizer)
    tensors.update(opt_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    state = {"loop": asdict(loop), "optimizer": opt_meta, "scheduler": scheduler.state_dict()}
    extra = {STATE_KEY: json.dumps(state), TRAIN_CONFIG_KEY: json.dumps(train_config)}
    return write_safetensors(tensors, path, model_metadata(model, extra))


def load_training_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    ema: nn.Module | None = None,
) -> LoopState:
    """Restores model, optimizer, scheduler, EMA and RNG from ``path``; returns the loop state."""
    tensors, meta = read_safetensors(path)
    if STATE_KEY not in meta:
        raise CheckpointError(f"{path} is a model file, not a training checkpoint (it has no training state)")
    saved_name = meta.get(MODEL_NAME_KEY)
    if saved_name != getattr(model, "model_name", None):
        raise CheckpointError(f"{path} is a checkpoint of {brief(saved_name)}, not of {model.model_name}")
    check_finite(tensors, str(path))
    state = parse_json(meta[STATE_KEY], f"{path}: its training state", CheckpointError)
    _check_model_tensors(path, tensors, model)
    _check_optimizer_state(path, tensors, optimizer)
    _check_state(path, state, optimizer, scheduler)
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
        if ema is not None:
            ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}, strict=True)
        optimizer.load_state_dict(_optimizer_from_flat(tensors, state["optimizer"]))
        scheduler.load_state_dict(state["scheduler"])
        loop = LoopState(**{"cpu_s": None, **state["loop"]})  # None: a checkpoint written before it was counted
        torch.set_rng_state(tensors["rng.torch"])
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path} does not match this run's model or optimizer, or is damaged: {e}") from None
    _check_loop(path, loop)
    return loop


def _check_loop(path, loop: LoopState) -> None:
    """Raises :class:`CheckpointError` unless every field of ``loop`` (read from a file) holds what its annotation
    says, counters are not negative (``best_epoch``: -1 before any validation) and the epoch sums are finite: a
    damaged state is refused here, whatever the damage, rather than failing later in the loop."""
    hints = typing.get_type_hints(LoopState)
    for f in fields(LoopState):
        if not _fits(getattr(loop, f.name), hints[f.name]):
            raise CheckpointError(f"{path}: its loop state is damaged ({f.name} is not {_type_name(hints[f.name])})")
    if min(loop.epoch, loop.step_in_epoch, loop.global_step, loop.best_epoch + 1) < 0:
        raise CheckpointError(f"{path}: its loop state is damaged (a negative counter)")
    if not all(math.isfinite(v) for v in loop.epoch_sums.values()):
        raise CheckpointError(f"{path}: its loop state is damaged (epoch sums that are not finite)")


def _fits(value, kind) -> bool:
    """Whether a value parsed from JSON is of type ``kind``: int (not bool), float (any number), str, None, unions,
    and lists and dicts of those."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (types.UnionType, typing.Union):
        return any(_fits(value, a) for a in args)
    if origin is list:
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(_fits(k, args[0]) and _fits(v, args[1]) for k, v in value.items())
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return kind in (str, type(None)) and isinstance(value, kind)


def _type_name(kind) -> str:
    return kind.__name__ if isinstance(kind, type) else str(kind).replace("NoneType", "None")


def _check_state(path, state, optimizer: torch.optim.Optimizer, scheduler) -> None:
    """The saved optimizer settings and schedule have the structure and types of this run's own (:func:`_check_like`),
    and the optimizer's groups hold its parameters in its order."""
    opt = state.get("optimizer") if isinstance(state, dict) else None
    if not isinstance(opt, dict) or not isinstance(state.get("loop"), dict) or "scheduler" not in state:
        raise CheckpointError(f"{path}: its training state is damaged (no optimizer, schedule or loop state)")
    fresh_groups = optimizer.state_dict()["param_groups"]
    _check_like(path, "optimizer settings", opt.get("param_groups"), fresh_groups)
    for saved, fresh in zip(opt["param_groups"], fresh_groups, strict=True):  # a loaded group replaces the fresh one
        for key in sorted(fresh.keys() - saved.keys())[:1]:
            raise CheckpointError(f"{path}: damaged optimizer settings (no {brief(key)})")
    if [g.get("params") for g in opt["param_groups"]] != [g["params"] for g in fresh_groups]:
        raise CheckpointError(f"{path}: damaged optimizer settings (its parameters in another order)")
    _check_like(path, "optimizer scalars", opt.get("scalars", {}), {}, numbers=True)
    _check_like(path, "schedule", state["scheduler"], scheduler.state_dict())


def _check_like(path, what: str, value, fresh, numbers: bool = False) -> None:
    """Raises :class:`CheckpointError` unless ``value`` (read from a file) has the structure and the value types of
    ``fresh``, the same state as this run builds it: a mapping only keys ``fresh`` has (a missing one keeps the
    fresh value), a list as many items, numbers finite numbers, flags flags (a setting fresh leaves unset, None,
    may also be a flag), text text. ``numbers``: ``fresh`` is a mapping whose values may be any finite numbers.
    Hyper-parameters and schedule counters of another type would load and fail at the first step, or replace a
    method of the scheduler (its state is set as attributes)."""
    problem = _unlike(value, fresh, numbers)
    if problem is not None:
        raise CheckpointError(f"{path}: damaged {what} ({problem})")


def _unlike(value, fresh, numbers: bool = False, where: str = "") -> str | None:
    if numbers:
        if not isinstance(value, dict):
            return "not a mapping"
        bad = [k for k, v in value.items() if not _finite_number(v)]
        return f"{brief(bad[0])} is not a finite number" if bad else None
    at = f" at {brief(where)}" if where else ""
    if isinstance(fresh, dict):
        if not isinstance(value, dict):
            return f"not a mapping{at}"
        extra = sorted(set(value) - set(fresh), key=str)
        if extra:
            return f"an unknown key {brief(extra[0])}{at}"
        for k, v in value.items():
            problem = _unlike(v, fresh[k], where=f"{where}.{k}" if where else str(k))
            if problem:
                return problem
        return None
    if isinstance(fresh, list | tuple):
        if not isinstance(value, list) or len(value) != len(fresh):
            return f"not a list of {len(fresh)}{at}"
        for i, (v, f) in enumerate(zip(value, fresh, strict=True)):
            problem = _unlike(v, f, where=f"{where}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(fresh, bool):
        return None if isinstance(value, bool) else f"not a flag{at}"
    if fresh is None:  # a setting left to torch (foreach): unset, or a flag
        return None if value is None or isinstance(value, bool) else f"not a flag{at}"
    if isinstance(fresh, int | float):
        return None if _finite_number(value) else f"not a finite number{at}"
    if isinstance(fresh, str):
        return None if isinstance(value, str) else f"not text{at}"
    return f"an unexpected value{at}"


def _finite_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _check_model_tensors(path, tensors: dict[str, torch.Tensor], model: nn.Module) -> None:
    """The checkpoint's model tensors have this run's model's names and shapes; a shape that differs is named (a run
    resumed on data of other classes, channels or size, with the same model, differs only there)."""
    own = model.state_dict()
    saved = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    for key in sorted(own.keys() - saved.keys())[:1]:
        raise CheckpointError(f"{path} does not match this run's model: it has no {brief(key)}")
    for key in sorted(saved.keys() - own.keys())[:1]:
        raise CheckpointError(f"{path} does not match this run's model: {brief(key)} is not one of its tensors")
    for key, value in saved.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise CheckpointError(
                f"{path} holds {key} of shape {tuple(value.shape)} where this run's model has "
                f"{tuple(own[key].shape)}: was it trained on data of other classes, channels or size?"
            )


def _check_optimizer_state(path, tensors: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer) -> None:
    """Each saved optimizer tensor (``optim.INDEX.NAME``) names a parameter of this optimizer, and a per-parameter
    statistic (momentum, Adam's moments) has that parameter's shape: a crafted checkpoint would otherwise load and
    fail at the first step, after the run folder was set up."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for key, v in tensors.items():
        if not key.startswith("optim."):
            continue
        _, idx, name = [*key.split(".", 2), "", ""][:3]
        if not idx.isdigit() or int(idx) >= len(params):
            raise CheckpointError(f"{path}: optimizer state {brief(key)} names no parameter of this model")
        if name in ("exp_avg", "exp_avg_sq", "momentum_buffer", "max_exp_avg_sq") and v.shape != params[int(idx)].shape:
            raise CheckpointError(f"{path}: optimizer state {key} has shape {tuple(v.shape)}, its parameter another")


def saved_train_config(path: str | os.PathLike) -> dict:
    """The training config a checkpoint was written with (from its header alone)."""
    meta = read_metadata(path)
    if STATE_KEY not in meta:
        raise CheckpointError(f"{path} is a model file, not a training checkpoint (it has no training state)")
    saved = parse_json(meta.get(TRAIN_CONFIG_KEY, "{}"), f"{path}: its training config", CheckpointError)
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path}: its training config is not a mapping")
    return saved
