"""Reading and writing weights as safetensors: no pickle, atomic writes, clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from ..errors import CheckpointError
from .atomic import atomic_path

__all__ = ["load_into", "read_metadata", "read_safetensors", "write_safetensors"]


def _read(path: str | os.PathLike, with_tensors: bool) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a weights file")
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            # safe_open has no __iter__
            tensors = {key: f.get_tensor(key) for key in f.keys()} if with_tensors else {}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({e}); mlpvision only reads weights saved as safetensors"
        ) from None
    return tensors, metadata


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Reads every tensor and the string metadata of a safetensors file onto the CPU.

    Raises:
        CheckpointError: when the file is missing or is not a valid safetensors file (a pickle posing as
            weights included: nothing in the file is ever executed).
    """
    return _read(path, with_tensors=True)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a safetensors file, from its header alone (no tensor is read)."""
    return _read(path, with_tensors=False)[1]


def write_safetensors(
    tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None
) -> Path:
    """Writes tensors atomically (:func:`~mlpvision.io.atomic.atomic_path`): a reader, or a crash, never sees a
    half-written file."""
    # safetensors refuses shared or non-contiguous storage; clone what needs it
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return Path(path)


def load_into(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str = "weights") -> None:
    """Loads ``state_dict`` strictly into ``model``, turning every mismatch into one :class:`CheckpointError`."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong)):
            if keys:
                more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
                parts.append(f"{label}: {', '.join(keys[:3])}{more}")
        name = getattr(model, "model_name", type(model).__name__)
        raise CheckpointError(f"{source} do not fit model {name} ({'; '.join(parts)})")
    model.load_state_dict(state_dict, strict=True)
