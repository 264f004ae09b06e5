"""Training checkpoints as safetensors: model, EMA, optimizer, scheduler and loop state, written atomically.

Tensors go into the safetensors body; everything else (optimizer hyper-parameters, scheduler state, counters,
history) into its JSON metadata. Nothing is pickled, so a checkpoint can never execute code when read.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError
from ..io import MODEL_NAME_KEY, model_metadata, read_metadata, read_safetensors, write_safetensors

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
    history: list[dict] = field(default_factory=list)  # one row of metrics per finished epoch
    elapsed_s: float = 0.0  # training wall time so far, across resumes


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
        raise CheckpointError(f"{path} is a checkpoint of {saved_name}, not of {model.model_name}")
    try:
        state = json.loads(meta[STATE_KEY])
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
        if ema is not None:
            ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}, strict=True)
        optimizer.load_state_dict(_optimizer_from_flat(tensors, state["optimizer"]))
        scheduler.load_state_dict(state["scheduler"])
        loop = LoopState(**state["loop"])
        torch.set_rng_state(tensors["rng.torch"])
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path} does not match this run's model or optimizer, or is damaged: {e}") from None
    return loop


def saved_train_config(path: str | os.PathLike) -> dict:
    """The training config a checkpoint was written with (from its header alone)."""
    meta = read_metadata(path)
    if STATE_KEY not in meta:
        raise CheckpointError(f"{path} is a model file, not a training checkpoint (it has no training state)")
    try:
        saved = json.loads(meta.get(TRAIN_CONFIG_KEY, "{}"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: its training config is not valid JSON ({e})") from None
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path}: its training config is not a mapping")
    return saved
