"""ONNX Runtime on the CPU: sessions, and :class:`OrtModel`, which calls one like a model so that evaluation code
takes an exported file as it takes a PyTorch model."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError, ConfigError, InputShapeError, printable
from ..io import MODEL_NAME_KEY, load_checkpoint, require_onnx
from ..io.files import open_regular
from ..runtime import pick_device

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "OrtModel", "model_device", "open_model_file", "ort_session"]

INPUT_NAME, OUTPUT_NAME = "image", "logits"  # the names export_onnx gives the graph's input and output


def ort_session(path: str | os.PathLike, threads: int | None = None):
    """An ONNX Runtime CPU session with full graph optimization and ``threads`` intra-op threads."""
    require_onnx()
    import onnxruntime as ort

    open_regular(path, "ONNX file", CheckpointError).close()  # a pipe or a device would hang the session
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
        out = self.session.get_outputs()[0].shape  # [batch, classes], or [batch, classes, H, W] for segmentation
        dense = len(out) == 4 and list(out[2:]) == list(shape[2:])
        if len(shape) != 4 or not all(isinstance(d, int) for d in shape[1:]) or (len(out) != 2 and not dense):
            raise CheckpointError(
                f"{path}: not an image classifier or segmenter: input shape {shape} and output shape {out}, "
                "expected (batch, channels, height, width) and (batch, classes) or (batch, classes, height, width)"
            )
        self.dense = dense  # per-pixel logits (a segmentation model)
        self.in_chans, self.img_size = shape[1], shape[2]
        self.input_shape = tuple(shape[1:])
        self.num_classes = out[1]
        self.model_name = printable(self.metadata.get(MODEL_NAME_KEY, self.path.stem), 200)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise InputShapeError(
                f"{self.path} takes images of shape (C, H, W) = {self.input_shape}, got {tuple(x.shape[1:])}; "
                "evaluate it on the data it was exported for (--data)"
            )
        feed = {INPUT_NAME: np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)}
        return torch.from_numpy(self.session.run([OUTPUT_NAME], feed)[0])

    def eval(self) -> OrtModel:
        return self

    def train(self, mode: bool = True) -> OrtModel:
        if mode:
            raise ConfigError("an ONNX Runtime model cannot be trained")
        return self


def model_device(model) -> torch.device:
    """Where a model from :func:`open_model_file` takes its inputs: its parameters' device, the CPU for ONNX."""
    return next(model.parameters()).device if isinstance(model, nn.Module) else torch.device("cpu")


def open_model_file(path: str | os.PathLike, device: str | torch.device | None = None):
    """Any model file the commands take, ready for inference: a ``.safetensors`` model file (train or deploy form)
    as a PyTorch model on ``device``, or an ONNX file (float32 or int8) as an :class:`OrtModel` (CPU only).

    Raises:
        ConfigError: an ONNX file asked to run on a GPU, or a device that is not available.
        CheckpointError: a file that is neither a model file nor a readable ONNX classifier.
    """
    dev = pick_device(device)
    if str(path).endswith(".onnx"):
        if device not in (None, "auto") and dev.type != "cpu":
            raise ConfigError(f"{path}: ONNX files run on the CPU (ONNX Runtime's CPU provider); use --device cpu")
        return OrtModel(path)
    return load_checkpoint(path, device=dev)
