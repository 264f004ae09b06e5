"""Process-wide settings and facts: the memory allocator, the device-choice rule, bfloat16 support, and the one
description of the machine that every results file records."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import platform

import torch

from .errors import ConfigError, brief

__all__ = [
    "checked_device",
    "cpu_model",
    "int8_dot_product_exact",
    "machine_description",
    "native_bf16",
    "pick_device",
    "tune_cpu_allocator",
]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


@functools.cache
def tune_cpu_allocator(threshold: int = 1 << 30) -> str | None:
    """Keeps large CPU tensors in glibc's heap instead of fresh ``mmap`` pages.

    By default glibc serves every allocation above a few MiB with a new ``mmap`` and returns it on free, so
    each activation of a large model is page-faulted in again on every forward pass: on Mixer-S/16 that is
    ~15% of the inference time. Raising the mmap and trim thresholds lets freed blocks be reused (the process
    keeps its peak memory). Idempotent; returns a description, or None where the C library is not glibc.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return None
    if not (mallopt(_M_MMAP_THRESHOLD, threshold) and mallopt(_M_TRIM_THRESHOLD, threshold)):
        return None
    return f"glibc malloc, mmap/trim threshold {threshold >> 20} MiB"


def pick_device(device: str | torch.device | None = None, local_rank: int = 0) -> torch.device:
    """The device rule of every command: ``device`` when given ("auto" or None: this process's GPU when CUDA is
    available, ``local_rank`` picking it among several, else the CPU).

    Raises:
        ConfigError: a device name torch does not know, or CUDA asked for where no CUDA device is available.
    """
    if device is not None and str(device) != "auto":
        return checked_device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def checked_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device that this machine has: a misspelt name, CUDA without a CUDA GPU (or a GPU index
    past the last one) is a :class:`~mlpvision.errors.ConfigError` saying what there is."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"unknown device {brief(device)}; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"--device {device}: this machine has no CUDA GPU (or PyTorch was built without CUDA); use --device cpu"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    elif dev.type not in ("cpu", "meta"):
        raise ConfigError(f"--device {device}: mlpvision runs on cpu or cuda")
    return dev


def native_bf16(device: torch.device | str) -> bool:
    """Whether bfloat16 autocast pays off on ``device``: a CUDA GPU with bfloat16, or a CPU with AMX or
    AVX-512-BF16 instructions. Elsewhere the CPU emulates bfloat16 and autocast is slower than float32
    (1.7x on repmlp_fast_28 training steps on an AVX-512 Xeon without BF16)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    return torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), for results files."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return cpu


def int8_dot_product_exact() -> bool:
    """Whether this CPU's int8 dot products accumulate without saturating: True on x86 with VNNI or AMX (and off
    x86). Without them (AVX2 alone) u8 x s8 products are summed in pairs into int16, which saturates on large
    weights; 7-bit weights (ONNX Runtime's ``reduce_range``) avoid it."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return True
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return True  # unknown: quantize with the full range
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags))


def machine_description() -> str:
    """CPU model, core count, torch version and intra-op threads: the machine a result was measured on."""
    return f"{cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__}, {torch.get_num_threads()} threads"
