"""Reading and writing weights as safetensors: no pickle, atomic writes, clear errors.

A file is checked before any tensor is read: it must be a regular file, its header at most
:data:`MAX_HEADER_BYTES`, valid JSON of string metadata and tensor entries whose data types are known and whose
byte ranges lie inside the file. :func:`read_header` gives each tensor's dtype and shape from the header alone,
so a model file can be checked against the model it describes before either is built. Loaded weights must be
finite: a NaN or an infinity is refused with the name of the tensor that holds it.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from ..errors import CheckpointError, LimitError, brief
from .atomic import atomic_path
from .files import open_regular, parse_json

__all__ = [
    "MAX_HEADER_BYTES",
    "TensorSpec",
    "check_finite",
    "check_fits",
    "load_into",
    "read_header",
    "read_metadata",
    "read_safetensors",
    "write_safetensors",
]

MAX_HEADER_BYTES = 16 << 20  # a header is ~100 bytes per tensor plus the metadata; real ones are far below this
# safetensors' dtype names -> torch dtypes
_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


class TensorSpec(NamedTuple):
    """A tensor as a safetensors header describes it."""

    dtype: torch.dtype
    shape: tuple[int, ...]


def _header(path: Path) -> tuple[dict[str, TensorSpec], dict[str, str]]:
    """The tensors (dtype, shape) and string metadata of a safetensors file, from its header alone, checked: size
    caps, known dtypes, byte ranges that match the shapes and lie inside the file."""
    with open_regular(path, "weights file", CheckpointError) as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path} is not a readable safetensors file (shorter than its 8-byte header length)")
        (n,) = struct.unpack("<Q", head)
        if 8 + n > size:
            raise CheckpointError(
                f"{path} is not a readable safetensors file (truncated, or another format: its first 8 bytes "
                f"promise a {n}-byte header, the file has {size} bytes); mlpvision only reads weights saved as "
                "safetensors"
            )
        if n > MAX_HEADER_BYTES:
            raise LimitError(f"{path}: its header has {n} bytes, more than the {MAX_HEADER_BYTES} a model file has")
        raw = f.read(n)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CheckpointError(f"{path} is not a safetensors file (its header is not UTF-8 JSON)") from None
    header = parse_json(text, f"{path}: the header", CheckpointError, MAX_HEADER_BYTES)
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} is not a safetensors file (its header is not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"{path}: its metadata is not a mapping of strings")
    specs, body = {}, size - 8 - n
    for name, entry in header.items():
        shown = brief(name)
        try:
            dtype = _DTYPES[entry["dtype"]]
            shape = tuple(int(d) for d in entry["shape"])
            start, end = (int(o) for o in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: tensor {shown} has no valid dtype, shape and offsets") from None
        count = 1
        for d in shape:
            count *= d
        if min(shape, default=0) < 0 or not 0 <= start <= end <= body or end - start != count * dtype.itemsize:
            raise CheckpointError(
                f"{path} is not a readable safetensors file (truncated or damaged: tensor {shown} has a shape or "
                "byte range that does not fit the file)"
            )
        specs[name] = TensorSpec(dtype, shape)
    return specs, metadata


def read_header(path: str | os.PathLike) -> tuple[dict[str, TensorSpec], dict[str, str]]:
    """Each tensor's dtype and shape, and the string metadata, from the header of a safetensors file, checked (no
    tensor is read)."""
    return _header(Path(path))


def _read(path: str | os.PathLike, with_tensors: bool) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    path = Path(path)
    _, metadata = _header(path)
    if not with_tensors:
        return {}, metadata
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


def _kind(dtype: torch.dtype) -> str:
    return "floating-point" if dtype.is_floating_point else ("boolean" if dtype == torch.bool else "integer")


def check_fits(
    expected: dict[str, TensorSpec], found: dict[str, TensorSpec], source: str, model_name: str = "the model"
) -> None:
    """Refuses tensors that do not fit a model: missing or unexpected names, other shapes, or another kind of data
    (integers where the model holds floating-point numbers); one :class:`CheckpointError` lists the first of each."""
    missing = [k for k in expected if k not in found]
    unexpected = [brief(k, 80) for k in found if k not in expected]
    wrong = [
        f"{k} {found[k].shape} vs {v.shape}" for k, v in expected.items() if k in found and found[k].shape != v.shape
    ]
    kinds = [
        f"{k} holds {_kind(found[k].dtype)} data ({str(found[k].dtype).removeprefix('torch.')}), "
        f"the model {_kind(v.dtype)}"
        for k, v in expected.items()
        if k in found and _kind(found[k].dtype) != _kind(v.dtype)
    ]
    if missing or unexpected or wrong or kinds:
        parts = []
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape mismatch", wrong),
            ("type", kinds),
        ):
            if keys:
                more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
                parts.append(f"{label}: {', '.join(keys[:3])}{more}")
        raise CheckpointError(f"{source} do not fit model {model_name} ({'; '.join(parts)})")


def check_finite(tensors: dict[str, torch.Tensor], source: str) -> None:
    """Refuses floating-point tensors that hold a NaN or an infinity (a diverged training or a damaged file: a model
    holding one predicts NaN or a meaningless 100%)."""
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise CheckpointError(
            f"{source}: {', '.join(bad[:3])}{more} hold NaN or infinite values (the training diverged or the file "
            "is damaged); use an earlier checkpoint"
        )


def load_into(
    model: nn.Module, state_dict: dict[str, torch.Tensor], source: str = "weights", assign: bool = False
) -> None:
    """Loads ``state_dict`` strictly into ``model``, turning every mismatch (names, shapes, kinds of data) and any
    non-finite weight into one :class:`CheckpointError`. ``assign``: the model's tensors become the state dict's
    (a model built on the meta device), keeping each parameter's ``requires_grad``."""
    own = {k: TensorSpec(v.dtype, tuple(v.shape)) for k, v in model.state_dict().items()}
    found = {k: TensorSpec(v.dtype, tuple(v.shape)) for k, v in state_dict.items()}
    check_fits(own, found, source, getattr(model, "model_name", type(model).__name__))
    check_finite(state_dict, source)
    model.load_state_dict(state_dict, strict=True, assign=assign)
