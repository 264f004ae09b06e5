"""What the lab reads off its result files: the metrics its tables show and its comparisons pair."""

from __future__ import annotations

import statistics
from collections.abc import Callable

__all__ = ["METRICS", "mean", "plateau_gain", "rel_drop", "top1", "train_top1"]


def mean(values: list[float]) -> float | None:
    return statistics.mean(values) if values else None


def top1(r: dict) -> float:
    """Final test top-1 (%); a run that diverged counts at chance."""
    return r["summary"]["test_top1_final"]


def train_top1(r: dict) -> float | None:
    """Training top-1 (%) of the last epoch, as training saw it (augmented)."""
    history = r.get("history") or [{}]
    return history[-1].get("train_top1")


def plateau_gain(r: dict) -> float | None:
    """Validation top-1 gained over the last 20% of the epochs (at least the last one): near 0 at a plateau."""
    vals = [h["val_top1"] for h in r.get("history", []) if h.get("val_top1") is not None]
    if len(vals) < 2:
        return None
    back = max(1, round(0.2 * len(vals)))
    return vals[-1] - vals[-1 - back]


def rel_drop(r: dict, shift: int = 4) -> float:
    """Share (%) of what a model learned above chance that a test-time shift of ``shift`` pixels undoes."""
    acc = r["shift_top1"]
    chance = 100.0 / r.get("num_classes", 10)
    return 100.0 * (acc["0"] - acc[str(shift)]) / max(acc["0"] - chance, 1e-9)


def expanded_top1(r: dict) -> float:
    """Test top-1 at twice the size of the block-diagonally expanded model, before any fine-tuning."""
    return r["expanded_top1"]


METRICS: dict[str, tuple[str, Callable[[dict], float]]] = {
    "top1": ("test top-1 (%)", top1),
    "rel_drop": ("relative drop at 4 px (%)", rel_drop),
    "expanded_top1": ("expanded, before fine-tuning (%)", expanded_top1),
}
