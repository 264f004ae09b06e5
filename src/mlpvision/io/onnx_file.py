"""The metadata of ONNX model files (model name, config, data set), read and written without running the model.

ONNX is an optional dependency (the ``deploy`` extra): each function says so clearly when it is missing.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import CheckpointError, ConfigError
from .files import open_regular

__all__ = ["read_onnx_metadata", "require_onnx", "write_onnx_metadata"]


def require_onnx() -> None:
    """Raises a :class:`ConfigError` naming the missing package when the ``deploy`` extra is not installed."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ConfigError(
            f"ONNX export needs the 'deploy' extra (onnx, onnxscript, onnxruntime): {e.name} is missing; "
            "pip install 'mlpvision[deploy]'"
        ) from None


def read_onnx_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata an exported model carries (model name, config, data set), without its weights."""
    require_onnx()
    import onnx

    open_regular(path, "ONNX file", CheckpointError).close()  # a pipe or a device would hang the reader
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError and others for broken files
        raise CheckpointError(f"{path}: not a valid ONNX model ({e})") from None
    return {p.key: p.value for p in proto.metadata_props}


def write_onnx_metadata(path: str | os.PathLike, metadata: dict[str, str]) -> Path:
    """Replaces the metadata of the ONNX file at ``path`` (in place: ``path`` is a temporary file of the caller's)."""
    require_onnx()
    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for k, v in metadata.items():
        proto.metadata_props.add(key=k, value=v)
    onnx.save(proto, str(path))
    return Path(path)
