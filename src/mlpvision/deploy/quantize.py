"""int8 quantization of exported ONNX models with ONNX Runtime's quantization tools.

- ``dynamic``: int8 weights of the matrix multiplies (MatMul, Gemm); activations quantized per batch at run time
  (no calibration, a scale computed on every call). Convolutions stay fp32: ONNX Runtime's ConvInteger is slower
  than its fp32 Conv on x86 (a ResNet-18 at 28 px runs 4x slower with it, the patch embedding of Mixer-S/16 takes
  18% of the int8 model's time), while the static mode's QLinearConv is fast.
- ``static``: int8 weights per output channel and activations with scales fixed beforehand from calibration
  images, written as QuantizeLinear / DequantizeLinear pairs (QDQ) that ONNX Runtime fuses into integer kernels
  (VNNI or AMX on recent x86 CPUs): no scale is computed at run time.

On an x86 CPU without VNNI or AMX (AVX2 alone) both modes quantize weights to 7 bits (``reduce_range``): its u8 x
s8 dot product sums pairs of products into int16, which saturates on 8-bit weights and costs accuracy; the mode
is chosen on the machine that quantizes (pass ``reduce_range`` to choose) and recorded in the model's metadata.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError
from ..io import atomic_path, read_onnx_metadata, require_onnx, write_onnx_metadata
from ..runtime import int8_dot_product_exact

__all__ = ["INT8_MODES", "int8_path", "quantize_int8"]

log = logging.getLogger(__name__)

INT8_MODES = ("dynamic", "static")
DYNAMIC_OPS = ["MatMul", "Gemm"]  # what dynamic mode quantizes (see the module's description)


def int8_path(path: str | os.PathLike) -> Path:
    """Where the int8 model of ``m.onnx`` goes: ``m.int8.onnx``."""
    path = Path(path)
    return path.with_name(path.stem + ".int8.onnx")


def _reader(images: torch.Tensor, input_name: str, batch: int = 32):
    """An ONNX Runtime calibration reader over normalised images (N, C, H, W)."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches: Iterator = iter(images.split(batch))

        def get_next(self) -> dict | None:
            x = next(self.batches, None)
            return None if x is None else {input_name: np.ascontiguousarray(x.numpy(), dtype=np.float32)}

    return Reader()


class _PerTensorFallback(logging.Filter):
    """Drops ONNX Runtime's "Axis 1 is out-of-range for weight ..." warnings (one per one-dimensional weight, e.g.
    an Affine scale or a bias, which has no channel axis and is quantized per tensor: the intended result) and
    counts them."""

    def __init__(self) -> None:
        super().__init__()
        self.dropped: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.levelno == logging.WARNING and "is out-of-range for weight" in message:
            self.dropped.append(message)
            return False
        return True


@contextlib.contextmanager
def _per_tensor_fallback_quiet() -> Iterator[None]:
    """ONNX Runtime's quantizer logs on the root logger; its per-tensor fallback notes become one debug line."""
    noise = _PerTensorFallback()
    root = logging.getLogger()
    root.addFilter(noise)
    try:
        yield
    finally:
        root.removeFilter(noise)
        if noise.dropped:
            log.debug("%d one-dimensional weights quantized per tensor (no channel axis)", len(noise.dropped))


def quantize_int8(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    mode: str = "dynamic",
    calibration: torch.Tensor | None = None,
    input_name: str = "image",
    reduce_range: bool | None = None,
) -> Path:
    """Quantizes the ONNX model ``src`` to int8 into ``dst`` (atomically), keeping ``src``'s metadata.

    Args:
        src: an fp32 ONNX model (as :func:`~mlpvision.deploy.export_onnx` writes it).
        dst: where the int8 model goes.
        mode: ``dynamic`` or ``static`` (see the module's description).
        calibration: normalised images (N, C, H, W) whose activation ranges fix the static scales (MinMax).
        input_name: the graph's input.
        reduce_range: 7-bit weights; ``None``: when this CPU's int8 dot product saturates (no VNNI or AMX).
    """
    require_onnx()
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if mode not in INT8_MODES:
        raise ConfigError(f"int8 quantization is {' or '.join(INT8_MODES)}, not {mode!r}")
    if mode == "static" and (calibration is None or len(calibration) == 0):
        raise ConfigError("static int8 quantization needs calibration images (--calibration-images N)")
    if reduce_range is None:
        reduce_range = not int8_dot_product_exact()
    with tempfile.TemporaryDirectory() as tmp, atomic_path(dst) as out:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        if mode == "dynamic":
            quantize_dynamic(
                str(pre),
                str(out),
                weight_type=QuantType.QInt8,
                op_types_to_quantize=DYNAMIC_OPS,
                reduce_range=reduce_range,
            )
        else:  # u8 activations x s8 weights: the operand pair of x86's integer dot-product instructions
            with _per_tensor_fallback_quiet():
                quantize_static(
                    str(pre),
                    str(out),
                    _reader(calibration, input_name),
                    quant_format=QuantFormat.QDQ,
                    per_channel=True,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    reduce_range=reduce_range,
                )
        write_onnx_metadata(out, {**read_onnx_metadata(src), "int8_reduce_range": str(reduce_range).lower()})
    return Path(dst)
