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

from .claims_priors import (
    global_,
    global_few,
    patch_shuffle,
    permutation,
    position,
    position_embedding,
    position_few,
    translation,
)
from .claims_repmlp import repmlp_ablation, repmlp_resnet, repmlp_vs_convnet
from .claims_resmlp import resmlp_distill, resmlp_norm, resmlp_transfer
from .claims_scale import data_size, resolution
from .context import PlanContext
from .spec import Experiment, Settings, check_data

__all__ = ["EXPERIMENTS", "plan"]

EXPERIMENTS: tuple[Callable[[PlanContext], Experiment], ...] = (
    repmlp_ablation,
    repmlp_vs_convnet,
    repmlp_resnet,
    resmlp_norm,
    resmlp_distill,
    resmlp_transfer,
    permutation,
    patch_shuffle,
    position_embedding,
    position,
    global_,
    translation,
    data_size,
    resolution,
    position_few,
    global_few,
)


def plan(s: Settings) -> list[Experiment]:
    """Every experiment of the lab with its runs, for the budgets in ``s``.

    Written for Fashion-MNIST's 28-px models; on CIFAR the ``_28`` models become their ``_32`` twins and every
    run trains on ``s.data``, except the synthetic position and global probes, which are the same everywhere.
    """
    p = PlanContext(s, check_data(s.data))
    return [e for e in (experiment(p) for experiment in EXPERIMENTS) if e.runs]
