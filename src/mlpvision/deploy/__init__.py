"""Deployment: train form -> deploy form, ONNX export and ONNX Runtime, int8 quantization, side-by-side speed
measurement, and prediction."""

from .bench import BACKENDS, MATMUL, Candidate, inference_call, matmul_candidate, measure, run_bench, timm_counterpart
from .convert import DeployReport, deploy_checkpoint
from .export import ExportReport, export_onnx
from .ort import OrtModel, model_device, open_model_file, ort_session
from .predict import (
    FilePrediction,
    Prediction,
    SegmentedFile,
    classify_samples,
    mask_colours,
    predict_files,
    predict_images,
    segment_files,
    slide_logits,
    slide_mask,
)
from .quantize import INT8_MODES, int8_path, quantize_int8

__all__ = [
    "BACKENDS",
    "INT8_MODES",
    "MATMUL",
    "Candidate",
    "DeployReport",
    "ExportReport",
    "FilePrediction",
    "OrtModel",
    "Prediction",
    "SegmentedFile",
    "classify_samples",
    "deploy_checkpoint",
    "export_onnx",
    "inference_call",
    "int8_path",
    "mask_colours",
    "matmul_candidate",
    "measure",
    "model_device",
    "open_model_file",
    "ort_session",
    "predict_files",
    "predict_images",
    "quantize_int8",
    "run_bench",
    "segment_files",
    "slide_logits",
    "slide_mask",
    "timm_counterpart",
]
