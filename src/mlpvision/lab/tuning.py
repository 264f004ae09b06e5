"""The lab's tuning protocol: one peak learning rate per model family, chosen on validation before any verdict run.

Protocol (pre-registered; the page prints it with the chosen rates and their validation scores):

- Every model of ``LAB_MODELS`` is a family; every run of every experiment trains at its family's rate.
- Each family trains for ``TUNE_EPOCHS`` epochs (a third of the lab's budget) on a seeded subset of the lab's size,
  with the lab recipe (AdamW, weight decay 0.05, batch 128, one warm-up epoch, cosine decay, float32), on the tuning
  seed ``TUNE_SEED``, which no verdict run uses, at rates from a half-decade ladder: first ``START`` (2e-3, the
  library's default, and the two rungs above it); while the best rate is the lowest or the highest rung tried, the
  next rung beyond it is added, up to the ladder's ends.
- The chosen rate is the one with the best top-1 on the validation images (held out of the training set) at the
  last epoch; a run whose loss becomes NaN counts at chance. Ties go to the lower rate. The test set is never read.
- Weight decay, batch size and schedule are not tuned: one rate per family is what the budget allows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .spec import LabRun

__all__ = ["LADDER", "START", "TUNE_EPOCHS", "TUNE_SEED", "Tuning", "rate_label", "resolve"]

LADDER = (2e-4, 6e-4, 2e-3, 6e-3, 2e-2, 6e-2, 2e-1)  # half-decade rungs around the library's default 2e-3
START = (2e-3, 6e-3, 2e-2)
TUNE_EPOCHS = 10
TUNE_SEED = 100  # no verdict run trains on this seed's subset
DEFAULT_LR = 2e-3  # TrainConfig's default: a run at this rate keeps its v2 key (its recipe names no rate)


def rate_label(lr: float) -> str:
    return f"{lr:g}"


def val_top1(result: dict) -> float:
    """Last-epoch validation top-1 of a result; chance for a run that diverged."""
    if result.get("diverged"):
        return 100.0 / result.get("num_classes", 10)
    history = [h for h in result.get("history", []) if h.get("val_top1") is not None]
    return history[-1]["val_top1"] if history else float("nan")


@dataclass
class Tuning:
    """The tuning state of a plan: the runs tried per family, their validation scores and the chosen rates."""

    runs: dict[str, list[LabRun]] = field(default_factory=dict)  # family -> runs tried, by rate
    scores: dict[str, dict[float, float]] = field(default_factory=dict)  # family -> rate -> validation top-1
    rates: dict[str, float] = field(default_factory=dict)  # family -> chosen rate (families done)

    @property
    def pending(self) -> list[LabRun]:
        """Tuning runs still to train (of families not decided yet)."""
        return [r for fam, runs in self.runs.items() if fam not in self.rates for r in runs]

    def rate(self, family: str) -> float | None:
        return self.rates.get(family)


def resolve(make_run, families: list[str], results: Path | None, quick: bool = False) -> Tuning:
    """Walks the protocol for every family against the result files under ``results`` (``None``: nothing done).

    ``make_run(family, lr)`` builds a family's tuning run at rate ``lr``. A family is decided once the best rate
    tried is an inner rung or a ladder end; otherwise its next rung is added to its pending runs.
    """
    done = _results(results)
    t = Tuning()
    for fam in families:
        tried = list(START[:1] if quick else START)  # quick mode: one rate (the selection has its own tests)
        while True:
            runs = [make_run(fam, lr) for lr in tried]
            t.runs[fam] = runs
            if any(r.key not in done for r in runs):
                break
            scores = {lr: val_top1(done[r.key]) for lr, r in zip(tried, runs, strict=True)}
            t.scores[fam] = scores
            best = max(tried, key=lambda lr: (scores[lr], -lr))  # ties: the lower rate
            i = LADDER.index(best)
            lower = LADDER[i - 1] if best == tried[0] and i > 0 else None
            upper = LADDER[i + 1] if best == tried[-1] and i < len(LADDER) - 1 else None
            if quick or (lower is None and upper is None):
                t.rates[fam] = best
                break
            tried = sorted({*tried, lower if lower is not None else upper})
    return t


def _results(results: Path | None) -> Mapping[str, dict]:
    if results is None or not (results / "runs").is_dir():
        return {}
    out = {}
    for f in (results / "runs").glob("*.json"):
        try:
            r = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        out[r.get("key", f.stem)] = r
    return out
