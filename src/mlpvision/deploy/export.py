"""Export to ONNX (re-parameterized first), verified in ONNX Runtime, optionally with an int8 twin.

``export_onnx(model, "m.onnx")`` writes an ONNX graph with a dynamic batch axis, runs it in ONNX Runtime on a
random batch and compares it with PyTorch; ``int8=True`` additionally writes ``m.int8.onnx`` quantized with
ONNX Runtime's dynamic quantization (int8 weights, per-batch uint8 activations: VNNI / AMX kernels on recent
x86 CPUs).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..io import atomic_path, check_writable, model_metadata, require_onnx, write_onnx_metadata
from ..reparam import check_deploy_form, needs_fusion, reparameterize
from .ort import INPUT_NAME, OUTPUT_NAME, OrtModel
from .quantize import int8_path, quantize_int8

__all__ = ["ExportReport", "export_onnx"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportReport:
    path: Path
    int8_path: Path | None
    max_abs_diff: float  # fp32 ONNX Runtime vs PyTorch on the check batch
    output_scale: float  # max |PyTorch output| on the check batch
    int8_max_abs_diff: float | None  # int8 vs PyTorch (quantization error, not a failure)
    int8_top1_agreement: float | None  # share of the int8 check images where int8 and PyTorch agree on the top class
    reparameterized: bool
    int8_mode: str | None = None  # "dynamic" or "static"


@torch.no_grad()
def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    int8: bool | str = False,
    calibration: torch.Tensor | None = None,
    metadata: dict[str, str] | None = None,
    check_batch: int = 8,
    rtol: float = 1e-4,
    seed: int = 0,
) -> ExportReport:
    """Exports ``model`` (its deploy form when it re-parameterizes) to ONNX with a dynamic batch axis.

    The exported graph is run in ONNX Runtime on a random batch of ``check_batch`` images: its largest
    difference from PyTorch must stay below ``rtol`` times the output scale, else nothing is written and a
    :class:`CheckpointError` raised. With ``int8`` (``"dynamic"`` or ``True``; ``"static"`` with ``calibration``
    images, see :mod:`mlpvision.deploy.quantize`) the quantized model is written next to it and its agreement with
    PyTorch reported, on the calibration images when given, else on the random batch. ``metadata`` (e.g. the data
    set's classes and normalisation) is stored in the ONNX file next to the model's name and config, so
    ``mlpvision eval`` can evaluate it like a model file.
    """
    require_onnx()
    path = Path(path)
    for out in (path, int8_path(path)) if int8 else (path,):  # every output, before one is written
        check_writable(out)
    model = model.eval()
    fused = needs_fusion(model)
    if fused:
        model = reparameterize(model)
    model = model.float().cpu()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(check_batch, model.in_chans, model.img_size, model.img_size, generator=gen)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with atomic_path(path) as tmp:  # verified before it replaces anything at ``path``
        torch.onnx.export(
            model,
            (x,),
            str(tmp),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            external_data=False,
            verbose=False,
            report=False,
        )
        write_onnx_metadata(tmp, {**model_metadata(model), **(metadata or {})})
        check = check_deploy_form(model, OrtModel(tmp), x, rtol, what="the ONNX model")
    if check.output_scale == 0:
        log.info("all outputs are zero on the check batch (an untrained zero-initialized head?)")
    q_path = q_diff = agree = None
    mode = "dynamic" if int8 is True else int8 or None
    if mode:
        q_path = quantize_int8(path, int8_path(path), mode, calibration, INPUT_NAME)
        probe = calibration[:256] if calibration is not None else x
        expected, q_out = model(probe), OrtModel(q_path)(probe)
        q_diff = (q_out - expected).abs().max().item()
        agree = (q_out.argmax(1) == expected.argmax(1)).float().mean().item()
    return ExportReport(path, q_path, check.max_abs_diff, check.output_scale, q_diff, agree, fused, mode)
