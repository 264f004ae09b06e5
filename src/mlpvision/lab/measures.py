"""What the lab reads off its result files: the metrics its tables show and its comparisons pair."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from .spec import SEG_SHIFT

__all__ = ["METRICS", "Metric", "last_train_top1", "miou", "moved_drop", "rel_drop", "seg_shift_drop", "top1"]


def top1(r: dict) -> float:
    """Final test top-1 (%); a run that diverged counts at chance."""
    return r["summary"]["test_top1_final"]


def last_train_top1(r: dict) -> float | None:
    """Training top-1 (%) of the last epoch, as training saw it (augmented); a segmentation run's pixel accuracy."""
    last = (r.get("history") or [{}])[-1]
    return last.get("train_top1", last.get("train_pixel_acc"))


def _chance(r: dict) -> float:
    return 100.0 / r.get("num_classes", 10)


def _share_undone(base: float, after: float, chance: float) -> float | None:
    """Share (%) of ``base``'s gain above chance that ``after`` loses; None when ``base`` is no better than chance
    (a share of nothing is undefined, and near zero it would be a ratio of noise)."""
    learned = base - chance
    return 100.0 * (base - after) / learned if learned > 0 else None


def rel_drop(r: dict, shift: int = 4) -> float | None:
    """Share (%) of what a model learned above chance that a test-time shift of ``shift`` pixels undoes."""
    acc = r.get("shift_top1")
    if not acc or acc.get(str(shift)) is None:
        return None
    return _share_undone(acc["0"], acc[str(shift)], _chance(r))


def moved_drop(r: dict) -> float | None:
    """Share (%) of what a model trained on aligned objects learned above chance that moving them undoes."""
    if r.get("moved_top1") is None:
        return None
    return _share_undone(top1(r), r["moved_top1"], _chance(r))


def gap(r: dict) -> float | None:
    """Training top-1 (no augmentation, evaluation mode) minus test top-1, in points: over-fitting."""
    if r.get("train_top1") is None:
        return None
    return r["train_top1"] - top1(r)


def miou(r: dict) -> float | None:
    """Final test mean IoU (%) of a segmentation run."""
    return r["summary"].get("test_miou_final")


def shifted_miou(r: dict) -> float | None:
    """Test mean IoU (%) of a segmentation model on its test scenes moved by SEG_SHIFT pixels."""
    return (r.get("shift_miou") or {}).get(str(SEG_SHIFT))


def seg_shift_drop(r: dict) -> float | None:
    """Share (%) of what a segmentation model earns above the all-background prediction (its test mean IoU minus
    that prediction's on the same scenes) that moving its test scenes by SEG_SHIFT pixels undoes. None for a run
    without the measurement (a diverged run has none: it would look perfectly robust) or no better than the floor."""
    shifted = r.get("shift_miou")
    if not shifted or shifted.get(str(SEG_SHIFT)) is None:
        return None
    base, moved, floor = shifted["0"], shifted[str(SEG_SHIFT)], shifted.get("floor", 0.0)
    if base <= floor:  # a model no better than background everywhere has earned nothing a move could undo
        return None
    return 100.0 * (base - moved) / (base - floor)


class Metric(NamedTuple):
    """A metric's column title and how to read it off a result."""

    title: str
    read: Callable[[dict], float | None]


METRICS: dict[str, Metric] = {
    "top1": Metric("test top-1 (%)", top1),
    "rel_drop": Metric("relative drop at 4 px (%)", rel_drop),
    "expanded_top1": Metric("expanded, before fine-tuning (%)", lambda r: r.get("expanded_top1")),
    "moved_top1": Metric("trained aligned, tested moved (%)", lambda r: r.get("moved_top1")),
    "moved_drop": Metric("share lost to the move (%)", moved_drop),
    "gap": Metric("train - test top-1 (points)", gap),
    "train_top1": Metric("last-epoch train top-1 (%)", last_train_top1),
    "train_eval_top1": Metric("train top-1, no augmentation (%)", lambda r: r.get("train_top1")),
    "miou": Metric("test mean IoU (%)", miou),
    "shifted_miou": Metric("mean IoU, test scenes moved (%)", shifted_miou),
    "seg_shift_drop": Metric("share of mean IoU above the floor lost to the move (%)", seg_shift_drop),
}
