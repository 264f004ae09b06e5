"""int8 quantization of exported ONNX models with ONNX Runtime's quantization tools."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..io import atomic_path, read_onnx_metadata, require_onnx, write_onnx_metadata

__all__ = ["int8_path", "quantize_int8"]


def int8_path(path: str | os.PathLike) -> Path:
    """Where the int8 model of ``m.onnx`` goes: ``m.int8.onnx``."""
    path = Path(path)
    return path.with_name(path.stem + ".int8.onnx")


def quantize_int8(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """ONNX Runtime dynamic quantization: int8 weights, uint8 activations quantized per batch at run time.

    ``dst`` is written atomically and carries ``src``'s metadata (model name, config, data set).
    """
    require_onnx()
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp, atomic_path(dst) as out:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_dynamic(str(pre), str(out), weight_type=QuantType.QInt8)
        write_onnx_metadata(out, read_onnx_metadata(src))
    return Path(dst)
