"""The lab's experiments: for each claim of the papers, the runs that can decide it, the hypothesis and what would
refute it, the effect the paper reports, and the comparisons whose verdicts decide it; one function per experiment
(in ``claims_repmlp``, ``claims_resmlp``, ``claims_priors`` and ``claims_scale``).

Every run trains in float32 on a seeded subset of the training images (the same subset for every model of a seed)
to a plateau, and is tested on the whole test set; every comparison pairs its two models seed by seed (see
:mod:`mlpvision.lab.stats`). Models are the small variants at lab widths (``LAB_MODELS``), chosen so the whole lab
fits in about 15 CPU hours on two cores (``mlpvision lab --plan`` prints the ledger).

:func:`plan` turns a :class:`~mlpvision.lab.spec.Settings` (full or ``--quick``) into
:class:`~mlpvision.lab.spec.Experiment` objects; :mod:`mlpvision.lab.runner` runs them and
:mod:`mlpvision.lab.report` reports them.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

from .claims_mixer import mixer_vs_vit, tying
from .claims_priors import aligned_translated, global_, patch_shuffle, permutation, position, position_embedding
from .claims_repmlp import repmlp_ablation, repmlp_resnet, repmlp_vs_convnet
from .claims_resmlp import (
    resmlp_distill,
    resmlp_norm,
    resmlp_norm_decay,
    resmlp_overfit,
    resmlp_overfit_corrected,
    resmlp_transfer,
)
from .claims_scale import data_size, resolution, resolution_corrected
from .claims_segmentation import segmentation, segmentation_translation
from .context import FINE_TUNING, PROBE_TUNE_SIZE, SEG_SCENES, PlanContext, probe_recipe
from .spec import Experiment, Settings, check_data
from .tuning import CONFIRM, FINE_TUNE, LADDER, START, TUNE_EPOCHS, TUNE_SEED, resolve

__all__ = ["CODE_CHANGES", "CORRECTIONS", "EXPERIMENTS", "CodeChange", "Correction", "needed_families", "plan"]

EXPERIMENTS: tuple[Callable[[PlanContext], Experiment], ...] = (
    repmlp_ablation,
    repmlp_vs_convnet,
    repmlp_resnet,
    aligned_translated,
    resmlp_norm,
    resmlp_norm_decay,
    resmlp_distill,
    resmlp_transfer,
    resmlp_overfit,
    resmlp_overfit_corrected,
    position_embedding,
    tying,
    mixer_vs_vit,
    permutation,
    patch_shuffle,
    position,
    global_,
    data_size,
    resolution,
    resolution_corrected,
    segmentation,
    segmentation_translation,
)


class Correction(NamedTuple):
    """A registered experiment corrected by another, registered apart (its own hash) when a review found a fault."""

    replaces: str  # the registered experiment's key
    ran: bool  # the registered one had run: it stays on the page as registered; else it never trains
    summary: str  # for the results page
    why: str  # when and why, for the plan


class CodeChange(NamedTuple):
    """A change to the training code, made after registration, that alters runs a registered experiment had not yet
    made. Not hashed (the plan's records hold designs, not code); the results page lists each."""

    sections: tuple[str, ...]  # the experiments whose later runs it alters
    what: str  # what changed, and when relative to those sections' tuning and verdict runs


CODE_CHANGES = (
    CodeChange(
        ("tying",),
        "no bias of any shape is weight-decayed any more: the untied Mixer's per-channel token-mixing biases (2-D) "
        "had been, the tied Mixer's (1-D) had not; changed on 2026-12-05 after the untied family's rate was tuned "
        "and before any tying verdict run, and that rate was not tuned again",
    ),
)


CORRECTIONS = {
    "resmlp_overfit_corrected": Correction(
        "resmlp_overfit",
        True,
        "the over-fitting section's regularised rows trained again after a review found a fault in their recipe; "
        "registered after that section's results, before the new runs",
        "added on 2026-12-05, after the over-fitting section's results, when a review of the page found that its "
        "regularised rows had trained without the lab recipe's random crop and flip (the code set their augmentation "
        "to the regularisers alone); it trains those rows again with the regularisers added to crop and flip, keeps "
        "the unregularised rows, the comparisons, margins and rules, and decides the claim",
    ),
    "resmlp_norm_decay": Correction(
        "resmlp_norm",
        True,
        "a sensitivity check of the Affine-vs-LayerNorm verdict, Affine not weight-decayed; not counted",
        "added on 2026-12-05, after the Affine-vs-LayerNorm results, when a review of the finished sections' configs "
        "found that the optimizer decays Affine's scale and shift ((1, 1, C) tensors) but not LayerNorm's 1-D "
        "parameters; it trains the Affine row again without that decay, keeps the other rows, and counts nothing",
    ),
    "resolution_corrected": Correction(
        "resolution",
        False,
        "the resolution section, corrected before any of its runs; the registered design never trained",
        "added on 2026-12-05, before any resolution run, when a review of the pending sections' configs found two "
        "differences besides the one under test: the expanded Mixer's token MLP is K^2 times wider than the scratch "
        "Mixer's, and at K times the size the same crop padding in pixels shifts the upscaled object K times less; "
        "the scratch Mixer now has the expanded width and both rows at the larger size crop with K times the "
        "padding; the comparisons, margins and rules are the registered ones",
    ),
}


def plan(s: Settings, results: Path | None = None, registered: bool = False) -> list[Experiment]:
    """Every experiment of the lab with its runs, for the budgets in ``s``: first the tuning of every family's
    learning rate (its state read from the result files under ``results``), then the experiments at those rates.

    Until a family's rate is chosen its runs carry the default rate (their cost is the same: the ledger can count
    them) and the plan context lists it in ``untuned``; the runner trains nothing at an unchosen rate.

    ``registered``: the plan as first registered, with the experiments a correction replaced before their runs
    (:data:`CORRECTIONS`); else without them (they never train).

    Written for Fashion-MNIST's 28-px models; on CIFAR the ``_28`` models become their ``_32`` twins and every
    run trains on ``s.data``, except the synthetic position and global probes, which are the same everywhere.
    """
    p, untuned = plan_context(s, results)
    replaced = set() if registered else {c.replaces for c in CORRECTIONS.values() if not c.ran}
    exps = [tuning_experiment(p, needed_families(s))] + [
        e for e in (experiment(p) for experiment in EXPERIMENTS) if e.runs and e.key not in replaced
    ]
    untuned.update(p.untuned)
    return exps


def plan_context(s: Settings, results: Path | None = None) -> tuple[PlanContext, set[str]]:
    """The plan's context with the tuning state read from ``results``, and the set of families still untuned
    (filled as experiments ask for rates)."""
    size = check_data(s.data)
    tuning = resolve(PlanContext(s, size).families(), results, s.quick)
    p = PlanContext(s, size, tuning)
    return p, p.untuned


def needed_families(s: Settings, only: list[str] | None = None) -> set[str]:
    """The tuned families the experiments (``only`` these keys, if given) train, and the base families of their
    fine-tunings: each experiment is built on a context with nothing tuned, which records every family it asks a
    rate of. A family no experiment asks for is never tuned."""
    needed: set[str] = set()
    for experiment in EXPERIMENTS:
        p, asked = plan_context(s, None)
        if experiment(p).key in (only or [experiment(p).key]):
            needed |= asked
    return needed | {base for key, (base, _) in FINE_TUNING.items() if key in needed}


def tuning_experiment(p: PlanContext, needed: set[str]) -> Experiment:
    """The tuning runs of the ``needed`` families, as an experiment (the ledger counts them, the page tables them)."""
    t = p.tuning
    runs = [r for fam, fam_runs in t.runs.items() if fam in needed for r in fam_runs]
    return Experiment(
        "tuning",
        "Tuning: one learning rate per model family, chosen on validation",
        "Not a claim: the protocol that gives every model of the lab its peak learning rate before any verdict run.",
        "-",
        "-",
        runs,
        _tuning_budget(p),
        kind="tuning",
    )


def _tuning_budget(p: PlanContext) -> str:
    """The tuning protocol's budgets in words, from the recipes its runs use."""
    s = p.s
    lab = p.recipe(TUNE_EPOCHS)
    probe = p.recipe(**probe_recipe(p, PROBE_TUNE_SIZE))
    fractions = ", ".join(str(Fraction(f).limit_denominator(100)) for f in FINE_TUNE)
    words = (
        f"{lab['epochs']} epochs on {lab.get('train_subset', 'all')} training images, {lab['val_size']} held out for "
        f"validation (seed {TUNE_SEED}, not a verdict seed); the probe families: {probe['epochs']} epochs on "
        f"{probe['train_subset']} probe images, {probe['val_size']} held out"
    )
    if s.data == "fashion-mnist":
        seg = p.seg_recipe(TUNE_EPOCHS)
        words += (
            f"; the segmentation families: {seg['epochs']} epochs on {seg.get('train_subset', SEG_SCENES)} scenes, "
            f"{seg['val_size']} held out"
        )
    return (
        words + f"; fine-tunings: their base's rate x {fractions}; rates from the ladder "
        f"{', '.join(f'{lr:g}' for lr in LADDER)}, starting at {', '.join(f'{lr:g}' for lr in START)} and extended "
        f"by one rung while the best is at an end; two best rates within {CONFIRM:g} points are told apart on a "
        "second seed"
    )
