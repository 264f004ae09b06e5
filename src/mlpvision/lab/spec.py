"""What a lab plan is made of: the budgets of a mode (:class:`Settings`), one training (:class:`LabRun`), one claim
tested by comparisons with stated verdict rules (:class:`Experiment`, :class:`Comparison`), and the data sets the
lab runs on.

A run's key hashes what it trains (not its label), so two experiments that need the same training share it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..errors import ConfigError, DataError

__all__ = [
    "EVAL_KEYS",
    "LAB_DATA",
    "SEG_SHIFT",
    "SHIFTS",
    "Comparison",
    "Curve",
    "Experiment",
    "LabData",
    "LabRun",
    "Rows",
    "Settings",
    "check_data",
    "current_latency",
    "data_suffix",
    "latency_config",
]

Rows = dict[str, list[dict]]  # a table's label -> the result files of its seeds

SHIFTS = (0, 1, 2, 3, 4)  # translation probe: pixels
GAP_IMAGES = 5000  # the train-test gap: training accuracy on (up to) this many of a run's training images
SEG_SHIFT = 16  # the segmentation translation test: pixels the centred test scenes move (a quarter of 64)
# LabRun.evals -> the result field each adds
EVAL_KEYS = {
    "shift": "shift_top1",
    "train_acc": "train_top1",
    "expanded": "expanded_top1",
    "moved": "moved_top1",
    "seg_shift": "shift_miou",
}


@dataclass(frozen=True)
class Settings:
    """The budgets of one lab mode. Every run trains in float32 on a seeded subset of the training images and is
    tested on the whole test set; ``scale`` multiplies every experiment's epochs (the quick mode's tiny budgets)."""

    quick: bool = False
    data: str = "fashion-mnist"  # or "cifar10" / "cifar100" (32x32 models); the synthetic probes stay 28x28
    seeds: tuple[int, ...] = (0, 1, 2)  # every verdict row
    more_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)  # rows near a boundary: the RepMLP ablation at the full budget
    many_seeds: tuple[int, ...] = tuple(range(10))  # cheap rows: the probes from 30 and 100 images
    subset: int = 5000  # training images of a run (a seeded subset; 0: all but validation)
    val_size: int = 2000  # held out of the training set: the tuning's selection, the curves
    test_subset: int = 0  # 0: the whole test set
    batch_size: int = 128
    epochs: int = 30  # the budget B every verdict row is trained to; its rows also run at B/2 (the budget check)
    scale: float = 1.0  # multiplies every epoch count (the quick mode's tiny budgets)
    latency_batch: int = 64
    latency_repeats: int = 10
    shift_images: int = 2000  # test images of the translation probe
    probe_sizes: tuple[int, ...] = (30, 100, 300, 1000)  # training images of the probes' sample-efficiency curves
    data_sizes: tuple[int, ...] = (1000, 5000, 20000)  # training images of the data-size curves (equal steps)

    @classmethod
    def full(cls) -> Settings:
        return cls()

    @classmethod
    def tiny(cls) -> Settings:
        return cls(
            quick=True,
            seeds=(0, 1),
            more_seeds=(0, 1),
            many_seeds=(0, 1),
            subset=96,
            val_size=64,
            test_subset=128,
            batch_size=32,
            scale=0.04,
            latency_batch=4,
            latency_repeats=2,
            shift_images=32,
            probe_sizes=(32, 64),
            data_sizes=(64, 96),
        )

    def epochs_of(self, epochs: int) -> int:
        """``epochs`` scaled to this mode (at least one)."""
        return max(1, round(epochs * self.scale))


@dataclass(frozen=True)
class LabRun:
    """One training run: a model with config overrides, trained with the lab recipe plus ``train`` overrides."""

    label: str  # row label in its experiment's table
    model: str
    seed: int = 0
    data: str = "fashion-mnist"
    model_args: Mapping[str, Any] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)  # TrainConfig overrides
    teacher: LabRun | None = None  # distillation teacher (trained first)
    init: LabRun | None = None  # fine-tune from this run's model
    evals: tuple[str, ...] = ()  # extra measurements (EVAL_KEYS)

    @property
    def key(self) -> str:
        """Identifies the training (not the label): identical runs in two experiments are trained once."""
        spec = {
            "model": self.model,
            "seed": self.seed,
            "data": self.data,
            "model_args": dict(self.model_args),
            "train": dict(self.train),
            "teacher": self.teacher.key if self.teacher else None,
            "init": self.init.key if self.init else None,
            "equal_time_min": 0.0,  # a field of earlier plans, kept in the hash so their runs keep their keys
        }
        digest = hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:8]
        return f"{self.model}-{digest}-s{self.seed}"

    def but(self, **changes) -> LabRun:
        """This run with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Comparison:
    """One verdict: ``a`` against ``b`` (row labels) on a metric, paired by seed.

    ``kind`` is the rule: ``greater`` (a beats b), ``noninferior`` (a at most ``margin`` points below b) or
    ``equivalent`` (within ``margin`` points either way); see :func:`mlpvision.lab.stats.decide`. ``minus``
    compares a change against a change: (a - b) - (c - d).
    """

    name: str
    a: str
    b: str
    kind: str = "greater"
    margin: float = 0.0
    metric: str = "top1"  # a name in mlpvision.lab.measures.METRICS
    deciding: bool = True  # False: shown (e.g. the half budget) but not a verdict of the claim
    minus: tuple[str, str] | None = None  # (c, d): compare (a - b) - (c - d), a change against a change
    reason: str = ""  # why this margin (required when margin > 0)
    exploratory: str = ""  # set when the rule was chosen after seeing results: why (shown; not in the corrections)
    test: str = "t"  # "t": paired t; "signflip": exact paired sign-flip test (few-image probes, bimodal outcomes)
    # with ``minus``: its two changes are a treatment's gains (a and c the treated rows), so where both are below zero
    # 'helps more' reads 'harms less' (a reading of the results, not a rule: not in the plan's records)
    gains: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("greater", "noninferior", "equivalent"):
            raise ConfigError(f"comparison {self.name!r}: unknown kind {self.kind!r}")
        if self.margin > 0 and not self.reason:
            raise ConfigError(f"comparison {self.name!r}: a margin needs its reason")
        if self.test not in ("t", "signflip") or (self.test == "signflip" and self.kind != "greater"):
            raise ConfigError(f"comparison {self.name!r}: the sign-flip test decides 'greater' rules only")
        if self.gains and not self.minus:
            raise ConfigError(f"comparison {self.name!r}: only a change against a change compares two gains")

    @property
    def counted(self) -> bool:
        """Part of the family-wise corrections and of the claims' verdicts."""
        return self.deciding and not self.exploratory

    @property
    def rule(self) -> str:
        f = (lambda x: x) if self.metric == "top1" else (lambda x: f"{self.metric}({x})")
        a, b = f(self.a), f(self.b)
        lhs = f"({a} - {b}) - ({f(self.minus[0])} - {f(self.minus[1])})" if self.minus else f"{a} - {b}"
        if self.kind == "greater":
            return f"{lhs} > 0"
        if self.kind == "noninferior":
            return f"{lhs} > -{self.margin:g}"
        return f"|{lhs}| < {self.margin:g}"


class Curve(NamedTuple):
    """A line of a figure: the rows that are its points and their x values."""

    name: str
    labels: tuple[str, ...]
    xs: tuple[float, ...]


@dataclass
class Experiment:
    """One claim of the papers (or a design probe) as runs, a table and verdicts.

    Everything the report shows of a section is a field here: its extra columns (``columns``, metric names), its
    figure (``curves`` on ``xlabel``, or a dot plot of the rows), its latency table and its deterministic checks.
    """

    key: str
    title: str
    hypothesis: str  # what the papers claim, as something the runs can confirm or refute
    refutation: str  # which result would refute it
    paper: str  # the effect size the paper reports
    runs: list[LabRun]
    budget: str  # the shared budget, in words
    comparisons: list[Comparison] = field(default_factory=list)
    latency: dict[str, tuple[str, dict]] = field(default_factory=dict)  # label -> (model, model_args)
    curves: list[Curve] = field(default_factory=list)
    xlabel: str = ""  # the curves' x axis (the dot plot's, when it shows figure_columns)
    logx: bool = False
    metric: str = "top1"  # what the table and the curves show
    notes: str = ""
    kind: str = "claim"  # "claim": verdicts; "tuning": the protocol's table of rates
    columns: tuple[str, ...] = ()  # extra per-row metrics (names in mlpvision.lab.measures.METRICS)
    figure_columns: tuple[str, ...] = ()  # metrics of the metric's unit the dot plot shows beside it, a marker each
    budget_pairs: dict[str, str] = field(default_factory=dict)  # row at B -> its row at B/2 (the budget check)
    checks: tuple[str, ...] = ()  # deterministic checks shown with the section (names in mlpvision.lab.checks)
    latency_batch: int | None = None  # the latency table's batch (None: the settings')


class LabData(NamedTuple):
    title: str
    size: int  # image side in pixels: picks the `_28` or `_32` twin of every model
    chans: int


LAB_DATA = {  # the data sets the lab runs on
    "fashion-mnist": LabData("Fashion-MNIST", 28, 1),
    "cifar10": LabData("CIFAR-10", 32, 3),
    "cifar100": LabData("CIFAR-100", 32, 3),
}


def data_suffix(data: str) -> str:
    """Suffix of the lab's default folders, page and figures for ``data`` (none for Fashion-MNIST)."""
    return "" if data == "fashion-mnist" else f"-{data}"


def check_data(name: str) -> int:
    """The image size of lab data set ``name`` (a clear error for any other)."""
    if name not in LAB_DATA:
        raise ConfigError(f"the lab runs on {', '.join(LAB_DATA)}, not {name!r}")
    return LAB_DATA[name].size


# the fields of a lab result file the page, the tuning and the ledger read, and their types (a result holds more)
_RESULT_FIELDS = {"key": str, "label": str, "seed": int, "summary": dict}
_RESULT_OPTIONAL = {"history": list, "params": int, "macs": int, "deploy_params": int, "deploy_macs": int,
                    "machine": str, "precision": str, "model": str}  # fmt: skip


def read_result(path: str | os.PathLike) -> dict:
    """A lab result file (``results/.../runs/KEY.json``), checked: a mapping with a key, label, seed and summary of
    the right types, numbers in its summary, rows in its history. A damaged or edited file is one
    :class:`~mlpvision.errors.DataError` naming it (delete it and the lab trains that run again), not a failure
    somewhere in the page."""
    hint = "delete it and the lab trains that run again"
    try:
        r = read_mapping(path, "lab result")
    except DataError as e:
        raise DataError(f"{e}: {hint}") from None
    problem = _result_problem(r)
    if problem:
        raise DataError(f"lab result {path} is damaged ({problem}): {hint}")
    return r


def _result_problem(r: dict) -> str | None:
    for name, kind in _RESULT_FIELDS.items():
        if not isinstance(r.get(name), kind) or (kind is int and isinstance(r[name], bool)):
            return f"{name} is not {'a mapping' if kind is dict else kind.__name__}"
    for name, kind in _RESULT_OPTIONAL.items():
        if name in r and r[name] is not None and not isinstance(r[name], kind):
            return f"{name} is not {kind.__name__}"
    if any(not isinstance(row, dict) for row in r.get("history") or []):
        return "a history row is not a mapping"
    for name, value in r["summary"].items():
        if not name.startswith(("test_", "train_", "best_val", "steps")):  # names, paths, flags
            continue
        values = value if isinstance(value, list) else [value]
        if not all(v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in values):
            return f"summary.{name} is not a number"
    return None


def read_meta(path: str | os.PathLike) -> dict:
    """A lab results folder's ``meta.json`` (settings, machine, plan hashes), checked to be mappings; {} if absent."""
    if not os.path.isfile(path):
        return {}
    meta = read_mapping(path, "lab meta file")
    if not isinstance(meta.get("settings", {}), dict):
        raise DataError(f"lab meta file {path} is damaged (not a mapping of settings): rerun the lab to rewrite it")
    return meta


_TIMES = ("median_ms", "p25_ms", "p75_ms")


def read_latency(path: str | os.PathLike) -> dict:
    """An experiment's latency table (``results/.../KEY_latency.json``), checked: a machine, a batch size and rows of
    label -> finite positive times (:data:`_TIMES`, in ms); {} if absent. A damaged or edited file is one
    :class:`~mlpvision.errors.DataError` naming it (delete it and ``mlpvision lab --latency-only`` times it again)."""
    if not os.path.isfile(path):
        return {}
    hint = "delete it and `mlpvision lab --latency-only` times it again"
    try:
        table = read_mapping(path, "lab latency table")
    except DataError as e:
        raise DataError(f"{e}: {hint}") from None
    rows = table.get("rows")
    problem = None
    if not isinstance(rows, dict) or not all(isinstance(row, dict) for row in rows.values()):
        problem = "its rows are not a mapping of mappings"
    elif not isinstance(table.get("machine"), str):
        problem = "machine is not a string"
    elif not isinstance(table.get("batch_size"), int) or isinstance(table["batch_size"], bool):
        problem = "batch_size is not an integer"
    else:
        bad = [
            f"{label}.{t}"
            for label, row in rows.items()
            for t in _TIMES
            if not (isinstance(row.get(t), int | float) and not isinstance(row[t], bool) and 0 < row[t] < math.inf)
        ]
        problem = f"{bad[0]} is not a positive time in ms" if bad else None
    if problem:
        raise DataError(f"lab latency table {path} is damaged ({problem}): {hint}")
    return table


def latency_config(model: str, args: dict) -> str:
    """What a latency row timed, as its table records it: the model and its arguments, canonical JSON."""
    return json.dumps({"model": model, "args": args}, sort_keys=True, default=list)


def current_latency(table: dict, planned: dict[str, tuple[str, dict]], batch: int) -> dict:
    """``table`` (from :func:`read_latency`) with only the rows that timed what the experiment plans under that label
    (``planned``: label -> (model, model_args)) at its ``batch``; {} when none is left. A row timed under an old
    label, config or batch, or by a version that did not record its config, is stale: ``mlpvision lab
    --latency-only`` times it again."""
    if table.get("batch_size") != batch:
        return {}
    rows = {
        label: row
        for label, row in table.get("rows", {}).items()
        if label in planned and row.get("config") == latency_config(*planned[label])
    }
    return {**table, "rows": rows} if rows else {}


def read_mapping(path: str | os.PathLike, what: str) -> dict:
    """A JSON file the lab reads that must hold a mapping (a result, meta.json, a published model's eval.json or
    summary.json, the headline comparison): anything else is one :class:`~mlpvision.errors.DataError` naming it."""
    from ..io.files import open_regular, parse_json

    with open_regular(path, what, DataError) as f:
        value = parse_json(f.read().decode("utf-8", errors="replace"), f"{what} {path}", DataError)
    if not isinstance(value, dict):
        raise DataError(f"{what} {path} is damaged (not a mapping)")
    return value
