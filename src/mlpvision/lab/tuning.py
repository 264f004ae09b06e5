"""The lab's tuning protocol: one peak learning rate per model family, chosen on validation before any verdict run.

Protocol (registered in ``docs/lab_plan.md``; the page prints the chosen rates and their validation scores):

- Every model of ``LAB_MODELS`` is a family trained on the lab's data; each model of the synthetic probes is a family
  of its own on each probe (tuned on the probe itself, at 100 training images); each fine-tuning (a larger input, new
  classes) is a family whose rates are its base family's rate times 1, 1/3 and 1/10.
- A family's tuning runs use the tuning seed ``TUNE_SEED`` and the lab recipe of the runs it serves (AdamW, weight
  decay 0.05, one warm-up epoch, cosine decay, float32) at ``TUNE_EPOCHS`` epochs (the probes and fine-tunings at
  their own epochs), at rates from a half-decade ladder: first ``START`` (2e-3, the library's default, and the two
  rungs above it); while the best rate is the lowest or the highest rung tried, the next rung beyond it is added, up
  to the ladder's ends.
- The chosen rate is the one with the best top-1 on the validation images (held out of the training set) at the
  last epoch; a run whose loss becomes NaN counts at chance; ties go to the lower rate. When the two best rates are
  within ``CONFIRM`` points, both also train on ``CONFIRM_SEED`` and the better mean over the two seeds wins. The
  selection never reads the test set.
- Weight decay, batch size and schedule are not tuned: one rate per family is what the budget allows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from .spec import LabRun, read_result

__all__ = ["CONFIRM", "LADDER", "START", "TUNE_EPOCHS", "TUNE_SEED", "Family", "Tuning", "rate_label", "resolve"]

LADDER = (2e-4, 6e-4, 2e-3, 6e-3, 2e-2, 6e-2, 2e-1)  # half-decade rungs around the library's default 2e-3
START = (2e-3, 6e-3, 2e-2)
TUNE_EPOCHS = 10
TUNE_SEED = 100  # not a verdict seed (its training subset overlaps theirs only by chance)
CONFIRM_SEED = 101
CONFIRM = 1.5  # points: two best rates closer than this are told apart on a second seed
FINE_TUNE = (1.0, 1 / 3, 1 / 10)  # a fine-tuning family's rates: its base family's rate times these
DEFAULT_LR = 2e-3  # TrainConfig's default: a run at this rate keeps its v2 key (its recipe names no rate)


def rate_label(lr: float) -> str:
    return f"{lr:g}"


def val_top1(result: dict) -> float:
    """Last-epoch validation score of a result: top-1, or mean IoU for a segmentation run; chance (a mean IoU of 0
    for segmentation) for a run that diverged."""
    segment = result.get("train_config", {}).get("task") == "segment"
    if result.get("diverged"):
        return 0.0 if segment else 100.0 / result.get("num_classes", 10)
    key = "val_miou" if segment else "val_top1"
    history = [h for h in result.get("history", []) if h.get(key) is not None]
    return history[-1][key] if history else -math.inf  # no validation recorded: never chosen


@dataclass
class Tuning:
    """The tuning state of a plan: the runs tried per family, their validation scores and the chosen rates."""

    runs: dict[str, list[LabRun]] = field(default_factory=dict)  # family -> runs tried, by rate
    scores: dict[str, dict[float, float]] = field(default_factory=dict)  # family -> rate -> validation top-1
    rates: dict[str, float] = field(default_factory=dict)  # family -> chosen rate (families done)
    confirmed: dict[str, dict[float, float]] = field(default_factory=dict)  # family -> rate -> mean over 2 seeds

    missing: set[str] = field(default_factory=set)  # keys of runs with no result yet

    def pending_of(self, families: set[str]) -> list[LabRun]:
        """Tuning runs still to train of ``families``."""
        return [r for fam in families if fam not in self.rates for r in self.runs.get(fam, []) if r.key in self.missing]

    @property
    def pending(self) -> list[LabRun]:
        """Tuning runs still to train (of families not decided yet)."""
        return [r for fam, runs in self.runs.items() if fam not in self.rates for r in runs if r.key in self.missing]

    def rate(self, family: str) -> float | None:
        return self.rates.get(family)


class Family(NamedTuple):
    """A tuned family: ``make(lr, seed, rates)`` builds its run at ``lr`` (None while a family it builds on, named in
    ``rates``, is not decided); ``base``: a fine-tuning family, whose rates are ``base``'s rate times
    :data:`FINE_TUNE`, without extension."""

    key: str
    make: Callable[[float, int, Mapping[str, float]], LabRun | None]
    base: str | None = None


def resolve(families: list[Family], results: Path | None, quick: bool = False) -> Tuning:
    """Walks the protocol for every family against the result files under ``results`` (``None``: nothing done).

    A family is decided once the best rate tried is an inner rung or a ladder end (and, when the two best are
    close, the confirmation seed has told them apart); otherwise its next runs are pending.
    """
    done = _results(results)
    t = Tuning()
    _resolve(t, families, done, quick)
    t.missing = {r.key for runs in t.runs.values() for r in runs if r.key not in done}
    return t


def _resolve(t: Tuning, families: list[Family], done: Mapping[str, dict], quick: bool) -> None:
    for fam in families:
        if quick:  # quick mode trains no tuning runs: every family at the default (the selection has its own tests)
            t.rates[fam.key] = DEFAULT_LR if fam.base is None else t.rates[fam.base]
            continue
        if fam.base is not None:
            if fam.base not in t.rates:
                continue  # its base family is not decided yet: nothing to run
            ladder = tuple(t.rates[fam.base] * f for f in FINE_TUNE)
            tried = list(ladder)
        else:
            ladder = LADDER
            tried = list(START)
        while True:
            runs = [fam.make(lr, TUNE_SEED, t.rates) for lr in tried]
            t.runs[fam.key] = runs
            if any(r.key not in done for r in runs):
                break
            scores = {lr: val_top1(done[r.key]) for lr, r in zip(tried, runs, strict=True)}
            t.scores[fam.key] = scores
            best = max(tried, key=lambda lr: (scores[lr], -lr))  # ties: the lower rate
            i = ladder.index(best)
            extend = fam.base is None
            lower = ladder[i - 1] if extend and best == tried[0] and i > 0 else None
            upper = ladder[i + 1] if extend and best == tried[-1] and i < len(ladder) - 1 else None
            if lower is not None or upper is not None:
                tried = sorted({*tried, lower if lower is not None else upper})
                continue
            ranked = sorted(tried, key=lambda lr: (-scores[lr], lr))
            if len(ranked) > 1 and scores[ranked[0]] - scores[ranked[1]] < CONFIRM:
                pair = ranked[:2]
                second = [fam.make(lr, CONFIRM_SEED, t.rates) for lr in pair]
                t.runs[fam.key] = runs + second
                if any(r.key not in done for r in second):
                    break
                mean = {lr: (scores[lr] + val_top1(done[r.key])) / 2 for lr, r in zip(pair, second, strict=True)}
                t.confirmed[fam.key] = mean
                best = max(pair, key=lambda lr: (mean[lr], -lr))
            t.rates[fam.key] = best
            break


def _results(results: Path | None) -> Mapping[str, dict]:
    if results is None or not (results / "runs").is_dir():
        return {}
    out = {}
    for f in (results / "runs").glob("*.json"):
        r = read_result(f)  # a damaged file is an error naming it, not a run the protocol silently redoes
        out[r["key"]] = r
    return out
