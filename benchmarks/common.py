"""Shared timing helpers for the benchmark scripts: interleaved repeats, medians, machine description."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable

import torch


def machine() -> str:
    """CPU model, core count and torch threads, for every results file."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}; torch {torch.__version__}, {torch.get_num_threads()} threads"


@torch.inference_mode()
def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 2) -> dict[str, dict]:
    """Times each function ``repeats`` times in round-robin order (all see the same machine state).

    Returns, per name, the median, min and max seconds per call.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {n: [] for n in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {n: {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t)} for n, t in times.items()}


def write_results(stem: str, meta: dict, rows: list[dict], markdown: list[str]) -> None:
    """Writes docs/<stem>.json (meta + rows) and docs/<stem>.md, and prints the Markdown."""
    from pathlib import Path

    docs = Path(__file__).resolve().parents[1] / "docs"
    docs.mkdir(exist_ok=True)
    (docs / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    (docs / f"{stem}.md").write_text("\n".join(markdown) + "\n")
    print("\n".join(markdown))
