"""What the lab reads off its result files: the figures its tables show and its verdicts compare."""

from __future__ import annotations

import statistics

__all__ = ["gap", "mean", "mean_top1", "shift_drop", "top1"]


def top1(rs: list[dict]) -> list[float]:
    """Final test top-1 of each run (one per seed)."""
    return [r["summary"]["test_top1_final"] for r in rs]


def mean(values: list[float]) -> float | None:
    return statistics.mean(values) if values else None


def mean_top1(rs: list[dict]) -> float | None:
    return mean(top1(rs))


def shift_drop(r: dict) -> float:
    """Test top-1 lost between no shift and the largest shift of the translation probe."""
    accs = [acc for _, acc in sorted(r["shift_top1"].items(), key=lambda item: int(item[0]))]
    return accs[0] - accs[-1]


def gap(r: dict) -> float:
    """Train top-1 (without augmentation) minus test top-1: how much a run over-fits."""
    return r["train_top1"] - r["summary"]["test_top1_final"]
