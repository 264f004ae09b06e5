"""Shared timing helpers for the benchmark scripts: interleaved repeats, medians, machine description."""

from __future__ import annotations

import json
from collections.abc import Callable

import torch


def machine() -> str:
    """CPU model, core count and torch threads, for every results file."""
    from mlpvision.runtime import cpu_model

    return f"{cpu_model()}; torch {torch.__version__}, {torch.get_num_threads()} threads"


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 2) -> dict[str, dict]:
    """Times each function ``repeats`` times round-robin (``mlpvision.bench.measure``), under inference mode.

    Returns, per name, the median, min and max seconds per call (and the quartiles).
    """
    from mlpvision.bench import Candidate, measure

    def no_grad(fn: Callable[[], object]) -> Callable[[], object]:
        return lambda: torch.inference_mode()(fn)()

    cands = [Candidate("mlpvision", name, no_grad(fn), None) for name, fn in fns.items()]
    return dict(zip(fns, measure(cands, repeats, warmup), strict=True))


def write_results(stem: str, meta: dict, rows: list[dict], markdown: list[str]) -> None:
    """Writes docs/<stem>.json (meta + rows) and docs/<stem>.md, and prints the Markdown."""
    from pathlib import Path

    docs = Path(__file__).resolve().parents[1] / "docs"
    docs.mkdir(exist_ok=True)
    (docs / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    (docs / f"{stem}.md").write_text("\n".join(markdown) + "\n")
    print("\n".join(markdown))
