"""Shared timing helpers for the benchmark scripts: interleaved repeats, medians, machine description."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from mlpvision.deploy import Candidate, measure
from mlpvision.io import write_json, write_text
from mlpvision.runtime import machine_description as machine

__all__ = ["interleaved_medians", "machine", "write_results"]


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 2) -> dict[str, dict]:
    """Times each function ``repeats`` times round-robin (``mlpvision.deploy.measure``), under inference mode.

    Returns, per name, the median, min and max seconds per call (and the quartiles).
    """

    def no_grad(fn: Callable[[], object]) -> Callable[[], object]:
        return lambda: torch.inference_mode()(fn)()

    cands = [Candidate("mlpvision", name, no_grad(fn), None) for name, fn in fns.items()]
    return dict(zip(fns, measure(cands, repeats, warmup), strict=True))


def write_results(stem: str, meta: dict, rows: list[dict], markdown: list[str]) -> None:
    """Writes docs/<stem>.json (meta + rows) and docs/<stem>.md, and prints the Markdown."""
    docs = Path(__file__).resolve().parents[1] / "docs"
    docs.mkdir(exist_ok=True)
    write_json(docs / f"{stem}.json", {"meta": meta, "rows": rows})
    write_text(docs / f"{stem}.md", "\n".join(markdown) + "\n")
    print("\n".join(markdown))
