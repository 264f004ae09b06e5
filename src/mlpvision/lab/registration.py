"""The lab's pre-registered plan: every experiment's hypothesis, rows, seeds, budgets, comparisons, margins (with
their reasons) and decision rules, written to ``docs/lab_plan.md`` with a hash, before the runs.

The hash covers the plan as the code builds it before any rate is tuned (the rates are chosen later by the
registered protocol of :mod:`mlpvision.lab.tuning`, so they are not part of it). The results page prints the hash
of the plan its runs came from; a rule marked ``exploratory`` was set after seeing results and says so.
"""

from __future__ import annotations

import hashlib
import json

from .context import LAB_MODELS, SEG_EPOCHS, SEG_MODELS, SEG_SCENES
from .plan import CORRECTIONS, plan
from .spec import Experiment, Settings
from .tuning import CONFIRM, LADDER, START, TUNE_EPOCHS, TUNE_SEED

__all__ = [
    "AMENDMENTS",
    "DECISION_RULES",
    "amendment_hash",
    "correction_hashes",
    "plan_hash",
    "plan_markdown",
    "plan_record",
]

# experiments registered after the first registration, each before any of its own runs: key -> when and why. They
# are hashed apart (the first plan's hash stays what its runs started under) and printed as an amendment.
_SEG_REVIEW = (
    "added on 2026-12-03 with the segmentation models and revised the same day after a methods review, still before "
    "any segmentation run: five seeds for the three ResNet rows (power for the non-inferiority margin), the centred "
    "scenes' garments kept whole by the move and the band it uncovers ignored, the loss to the move measured above "
    "the all-background prediction, a diverged run left out of its pair, and the hypotheses' wording"
)
AMENDMENTS = {"segmentation": _SEG_REVIEW, "segmentation_translation": _SEG_REVIEW}

DECISION_RULES = (
    "Every comparison pairs its two rows seed by seed (a seed fixes the training subset, the initialisation and the "
    "batch order of both) and takes the mean of the differences with Student's t (n - 1 degrees of freedom). Its p "
    "value tests the rule's boundary (0 for `greater`, -margin for `noninferior`, +-margin for `equivalent`, both "
    "one-sided tests for the latter), two-sided at 5% (so each one-sided claim is tested at 2.5%): **supported** when "
    "the 95% interval lies wholly on the claimed side, **refuted** when wholly on the other, **undecided** otherwise. "
    "The few-image probes, whose outcomes are often all or nothing per seed, use the exact paired sign-flip test over "
    "their 10 seeds instead. Family-wise error: Holm's step-down procedure over the counted comparisons of each claim "
    "of the mission (the claim's family; a counted comparison no claim names forms a family with its experiment's "
    "others) gives the verdict; Holm over every counted comparison of the page is shown beside it as the strict "
    "reading (with 3 seeds, df = 2, it can rarely decide anything: a t of about 28 is needed for 40 comparisons). A "
    "comparison marked exploratory, a half-budget one, or a reference is shown and not counted. A claim is supported "
    "when all its comparisons are (an intersection-union test), refuted when any is refuted or a check it rests on "
    "fails, undecided otherwise. Margins are the smallest difference that would change what a user concludes, each "
    "with its reason; seeds are set for power (10 for the cheap non-inferiority pairs at a 0.5 margin, 5 for the "
    "RepMLP ablation and the expensive pairs, 3 elsewhere). Budget check: each verdict row of the budget-sensitive "
    "claims also trains at B/2 (3 seeds); a decided verdict is **robust** when its deciding interval end, moved "
    "towards the boundary by the change of the estimate from B/2 to B, still decides it the same way (the next "
    "doubling, with diminishing returns, moves it less), else **budget-sensitive**; a row is marked still improving "
    "when its whole gain interval from B/2 to B lies above 1 point. Exact identities (an MLP's invariance to a pixel "
    "permutation, Mixer's to a patch + pixel shuffle, re-parameterization, the expansion) and facts of arithmetic "
    "(MACs) are deterministic checks, never verdicts."
)


TUNING_TEXT = (
    "Every lab model is a family with its own peak learning rate, chosen before any verdict run: {epochs} epochs on "
    "the lab's subset with the tuning seed {seed} (not a verdict seed; its subset overlaps theirs only by chance), "
    "rates from the ladder {ladder}, starting at {start}; while the best rate (last-epoch validation top-1; a run "
    "that diverges counts at chance; ties to the lower rate) is the lowest or highest tried, the next rung beyond it "
    "is added; when the two best rates are within {confirm} points, both also train on seed 101 and the better mean "
    "wins. Each model of the synthetic probes is tuned on each probe itself (100 probe images, the probes' recipe); "
    "each fine-tuning (resolution transfer, new classes) is a family whose rates are its base family's rate times 1, "
    "1/3 and 1/10, tuned on the tuning seed's pre-trained model. Weight decay (0.05), batch (128), warm-up (one "
    "epoch) and the cosine schedule are not tuned; the tuning budget (10 epochs, with augmentation) differs from some "
    "verdict budgets (30 epochs; no augmentation in the prior sections; equal steps in the data-size section), a "
    "limit of the protocol. The RepMLP ablations are families of their own (each model at its best rate; the rates "
    "are shown side by side). Families:"
)


def _experiment_record(e: Experiment) -> dict:
    return {
        "key": e.key,
        "title": e.title,
        "hypothesis": e.hypothesis,
        "refutation": e.refutation,
        "budget": e.budget,
        "runs": sorted(
            (
                r.label,
                r.model,
                r.seed,
                r.data,
                json.dumps(dict(r.model_args), sort_keys=True, default=str),
                json.dumps({k: v for k, v in r.train.items() if k != "lr"}, sort_keys=True, default=str),
                r.teacher.label if r.teacher else "",
                r.init.label if r.init else "",
                ",".join(r.evals),
            )
            for r in e.runs
        ),
        "comparisons": [
            {
                "name": c.name,
                "rule": c.rule,
                "kind": c.kind,
                "margin": c.margin,
                "metric": c.metric,
                "counted": c.counted,
                "deciding": c.deciding,
                "test": c.test,
                "reason": c.reason,
                "exploratory": c.exploratory,
            }
            for c in e.comparisons
        ],
        "checks": list(e.checks),
    }


def plan_record(settings: Settings) -> dict:
    """The plan as data (before tuning): the protocol, the decision rules and every experiment."""
    return {
        "tuning": {
            "families": {k: [m, json.dumps(a, sort_keys=True, default=str)] for k, (m, a) in LAB_MODELS.items()},
            "ladder": list(LADDER),
            "start": list(START),
            "epochs": TUNE_EPOCHS,
            "seed": TUNE_SEED,
        },
        "rules": DECISION_RULES,
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(settings).items()},
        "experiments": [
            _experiment_record(e)
            for e in plan(settings, registered=True)
            if e.kind == "claim" and e.key not in AMENDMENTS and e.key not in CORRECTIONS
        ],
    }


def amendment_record(settings: Settings) -> dict:
    """The amendment as data: its tuned families, its budgets and its experiments."""
    return {
        "families": {k: [m, json.dumps(a, sort_keys=True, default=str)] for k, (m, a) in SEG_MODELS.items()},
        "budget": {"scenes": SEG_SCENES, "epochs": SEG_EPOCHS},
        "experiments": [_experiment_record(e) for e in plan(settings) if e.key in AMENDMENTS],
        "when": AMENDMENTS,
    }


def correction_record(settings: Settings, key: str) -> dict:
    """Correction ``key`` as data (a key of :data:`~mlpvision.lab.plan.CORRECTIONS`): its experiment and why."""
    exps = [_experiment_record(e) for e in plan(settings) if e.key == key]
    return {"experiments": exps, "when": {key: CORRECTIONS[key].why}}


def correction_hashes(settings: Settings) -> dict[str, str]:
    """Each correction's hash, key -> hash: each is hashed apart, so a later one leaves an earlier one's alone."""
    return {key: _digest(correction_record(settings, key)) for key in CORRECTIONS}


def _digest(record: dict) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:16]


def plan_hash(settings: Settings) -> str:
    """The hash of the plan as first registered (its amendments apart)."""
    return _digest(plan_record(settings))


def amendment_hash(settings: Settings) -> str:
    """The hash of the plan's amendment (see :data:`AMENDMENTS`)."""
    return _digest(amendment_record(settings))


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _counted(c: dict) -> str:
    if c["counted"]:
        return "yes" + (" (sign-flip test)" if c["test"] == "signflip" else "")
    if c["exploratory"]:
        return f"no (exploratory: {c['exploratory']})"
    return "no (half budget)" if c["name"].endswith("(half budget)") else "no (a reference)"


def plan_markdown(settings: Settings) -> str:
    """``docs/lab_plan.md``: the registered plan in words, with its hash."""
    rec = plan_record(settings)
    amend = amendment_record(settings)
    lines = [
        "# The inductive-bias lab: the registered plan",
        "",
        f"Plan hash `{plan_hash(settings)}` (sha-256 of the plan as data, before any rate is tuned). Generated by "
        "`mlpvision lab --write-plan` from the plan's code and committed before its runs; `docs/results.md` prints the "
        "hash of the plan its runs came from.",
        "",
        "## Tuning protocol",
        "",
        TUNING_TEXT.format(
            epochs=TUNE_EPOCHS,
            seed=TUNE_SEED,
            ladder=", ".join(f"{x:g}" for x in LADDER),
            start=", ".join(f"{x:g}" for x in START),
            confirm=f"{CONFIRM:g}",
        ),
        "",
        *[f"- {k}: `{m}` {a}" for k, (m, a) in rec["tuning"]["families"].items()],
        "",
        "## Decision rules",
        "",
        DECISION_RULES,
        "",
        "## Settings",
        "",
        ", ".join(f"{k} = {v}" for k, v in rec["settings"].items()),
        "",
    ]
    lines += _sections(rec["experiments"])
    lines += [
        "## Amendment: segmentation",
        "",
        f"Amendment hash `{amendment_hash(settings)}`, {AMENDMENTS['segmentation']}. Its families are tuned by the "
        "protocol above on the scenes (10 epochs, validation mean IoU; a diverged run counts at a mean IoU of 0):",
        "",
        *[f"- {k}: `{m}` {a}" for k, (m, a) in amend["families"].items()],
        "",
    ]
    lines += _sections(amend["experiments"])
    for key, digest in correction_hashes(settings).items():
        record = correction_record(settings, key)
        lines += [f"## Correction: {record['experiments'][0]['title']}", "", f"Correction hash `{digest}`, "
                  f"{CORRECTIONS[key].why}.", ""]  # fmt: skip
        lines += _sections(record["experiments"])
    return "\n".join(lines)


def _sections(experiments: list[dict]) -> list[str]:
    lines: list[str] = []
    for e in experiments:
        rows: dict[str, list[int]] = {}
        for label, _m, seed, *_ in e["runs"]:
            rows.setdefault(label, []).append(seed)
        lines += [
            f"## {e['title']}",
            "",
            f"**Hypothesis.** {e['hypothesis']}",
            "",
            f"**Refuted by.** {e['refutation']}",
            "",
            f"**Budget.** {e['budget']}.",
            "",
            "**Rows (seeds).** " + "; ".join(f"{k} ({len(v)})" for k, v in rows.items()) + ".",
            "",
            "| comparison | rule | counted | margin's reason |",
            "|---|---|---|---|",
            *[
                f"| {_cell(c['name'])} | `{_cell(c['rule'])}` | {_counted(c)} | {_cell(c['reason']) or '-'} |"
                for c in e["comparisons"]
            ],
            "",
        ]
        if e["checks"]:
            lines += [f"**Checks.** {', '.join(e['checks'])}.", ""]
    return lines
