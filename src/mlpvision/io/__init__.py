"""Files: safetensors weights, model files (weights + name + config), ONNX metadata, atomic writes."""

from .atomic import (
    atomic_path,
    check_writable,
    json_safe,
    output_folder,
    remove_stale_temporaries,
    save_figure,
    to_json,
    write_json,
    write_text,
)
from .lock import RunLock
from .model_file import (
    CONFIG_KEY,
    DATA_KEY,
    MODEL_NAME_KEY,
    PRETRAINED_CFG_KEY,
    adapt_input_channels,
    create_model,
    data_metadata,
    file_metadata,
    load_checkpoint,
    load_pretrained,
    model_metadata,
    save_model,
    saved_data,
    saved_pretrained_cfg,
)
from .onnx_file import read_onnx_metadata, require_onnx, write_onnx_metadata
from .paths import shown_path
from .weights import load_into, read_metadata, read_safetensors, write_safetensors

__all__ = [
    "CONFIG_KEY",
    "DATA_KEY",
    "MODEL_NAME_KEY",
    "PRETRAINED_CFG_KEY",
    "RunLock",
    "adapt_input_channels",
    "atomic_path",
    "check_writable",
    "create_model",
    "data_metadata",
    "file_metadata",
    "json_safe",
    "load_checkpoint",
    "load_into",
    "load_pretrained",
    "model_metadata",
    "output_folder",
    "read_metadata",
    "read_onnx_metadata",
    "read_safetensors",
    "remove_stale_temporaries",
    "require_onnx",
    "save_figure",
    "save_model",
    "saved_data",
    "saved_pretrained_cfg",
    "shown_path",
    "to_json",
    "write_json",
    "write_onnx_metadata",
    "write_safetensors",
    "write_text",
]
