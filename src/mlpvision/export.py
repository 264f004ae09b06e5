"""Deployment to ONNX Runtime: export (re-parameterized first), verification, and dynamic int8 quantization.

``export_onnx(model, "m.onnx")`` writes an ONNX graph with a dynamic batch axis, runs it in ONNX Runtime on a
random batch and compares it with PyTorch; ``int8=True`` additionally writes ``m.int8.onnx`` quantized with
ONNX Runtime's dynamic quantization (int8 weights, per-batch uint8 activations: VNNI / AMX kernels on recent
x86 CPUs). :class:`OrtModel` wraps a session so that evaluation code can call it like a model.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoint import model_metadata
from .errors import CheckpointError, ConfigError
from .models.registry import MODEL_NAME_KEY
from .reparam import reparameterize

__all__ = [
    "ExportReport", "OrtModel", "export_onnx", "int8_path", "ort_session", "quantize_int8", "read_onnx_metadata",
]  # fmt: skip

log = logging.getLogger(__name__)

INPUT_NAME, OUTPUT_NAME = "image", "logits"


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ConfigError(
            f"ONNX export needs the 'deploy' extra (onnx, onnxscript, onnxruntime): {e.name} is missing; "
            "pip install 'mlpvision[deploy]'"
        ) from None


def int8_path(path: str | os.PathLike) -> Path:
    """Where the int8 model of ``m.onnx`` goes: ``m.int8.onnx``."""
    path = Path(path)
    return path.with_name(path.stem + ".int8.onnx")


def ort_session(path: str | os.PathLike, threads: int | None = None):
    """An ONNX Runtime CPU session with full graph optimization and ``threads`` intra-op threads."""
    _require_onnx()
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for unreadable files
        raise CheckpointError(f"{path}: not a valid ONNX model ({str(e).splitlines()[0]})") from None


class OrtModel:
    """Calls an ONNX Runtime session like a model: float tensor (B, C, H, W) in, logits tensor out."""

    training = False

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        self.session = ort_session(path, threads)
        self.path = Path(path)
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        shape = self.session.get_inputs()[0].shape  # [batch, C, H, W]
        self.in_chans, self.img_size = shape[1], shape[2]
        self.num_classes = self.session.get_outputs()[0].shape[1]
        self.model_name = self.metadata.get(MODEL_NAME_KEY, self.path.stem)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        feed = {INPUT_NAME: np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)}
        return torch.from_numpy(self.session.run([OUTPUT_NAME], feed)[0])

    def eval(self) -> OrtModel:
        return self

    def train(self, mode: bool = True) -> OrtModel:
        if mode:
            raise ConfigError("an ONNX Runtime model cannot be trained")
        return self


@dataclass(frozen=True)
class ExportReport:
    path: Path
    int8_path: Path | None
    max_abs_diff: float  # fp32 ONNX Runtime vs PyTorch on the check batch
    output_scale: float  # max |PyTorch output| on the check batch
    int8_max_abs_diff: float | None  # int8 vs PyTorch (quantization error, not a failure)
    int8_top1_agreement: float | None  # fraction of the check batch where int8 and PyTorch agree on the top class
    reparameterized: bool


def read_onnx_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata an exported model carries (model name, config, data set), without its weights."""
    _require_onnx()
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError and others for broken files
        raise CheckpointError(f"{path}: not a valid ONNX model ({e})") from None
    return {p.key: p.value for p in proto.metadata_props}


def _write_metadata(path: Path, metadata: dict[str, str]) -> None:
    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for k, v in metadata.items():
        proto.metadata_props.add(key=k, value=v)
    onnx.save(proto, str(path))


def quantize_int8(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """ONNX Runtime dynamic quantization: int8 weights, uint8 activations quantized per batch at run time."""
    _require_onnx()
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_dynamic(str(pre), str(dst), weight_type=QuantType.QInt8)
    return Path(dst)


def _has_reparameterizable(model: nn.Module) -> bool:
    from .reparam import Reparameterizable

    return any(isinstance(m, Reparameterizable) and not m.deploy for m in model.modules())


@torch.no_grad()
def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    int8: bool = False,
    metadata: dict[str, str] | None = None,
    check_batch: int = 8,
    rtol: float = 1e-4,
    seed: int = 0,
) -> ExportReport:
    """Exports ``model`` (its deploy form when it re-parameterizes) to ONNX with a dynamic batch axis.

    The exported graph is run in ONNX Runtime on a random batch of ``check_batch`` images: its largest
    difference from PyTorch must stay below ``rtol`` times the output scale, else the file is removed and a
    :class:`CheckpointError` raised. With ``int8`` the quantized model is written next to it and its deviation
    on the same batch reported. ``metadata`` (e.g. the data set's classes and normalisation) is stored in the
    ONNX file next to the model's name and config, so ``mlpvision eval`` can evaluate it like a model file.
    """
    _require_onnx()
    path = Path(path)
    model = model.eval()
    fused = _has_reparameterizable(model)
    if fused:
        model = reparameterize(model)
    model = model.float().cpu()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(check_batch, model.in_chans, model.img_size, model.img_size, generator=gen)
    path.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1, max=4096)
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.onnx.export(
            model, (x,), str(tmp), dynamo=True, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},), external_data=False, verbose=False, report=False,
        )  # fmt: skip
        _write_metadata(tmp, {**model_metadata(model), **(metadata or {})})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    expected = model(x)
    scale = expected.abs().max().item()
    if scale == 0:
        log.info("all outputs are zero on the check batch (an untrained zero-initialized head?)")
    diff = (OrtModel(path)(x) - expected).abs().max().item()
    if not diff <= rtol * max(scale, 1e-12):
        path.unlink(missing_ok=True)
        raise CheckpointError(f"the ONNX model differs from PyTorch by {diff:.3g} (output scale {scale:.3g})")
    q_path = q_diff = agree = None
    if int8:
        q_path = quantize_int8(path, int8_path(path))
        _write_metadata(q_path, read_onnx_metadata(path))
        q_out = OrtModel(q_path)(x)
        q_diff = (q_out - expected).abs().max().item()
        agree = (q_out.argmax(1) == expected.argmax(1)).float().mean().item()
    return ExportReport(path, q_path, diff, scale, q_diff, agree, fused)
