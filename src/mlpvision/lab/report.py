"""docs/results.md and docs/figures/lab_*.png (results-cifar10.md, lab-cifar10_*.png for CIFAR-10, ...),
generated from the lab's JSON results alone.

The page opens with the claims of the mission and their verdicts, then every verdict with its estimate, interval,
margin, rule, raw and Holm-adjusted p values and the smallest effect its design detects, the tuned learning rates,
the deterministic checks, and the plan's hash. Each experiment's section follows: hypothesis, refutation, the paper's
effect size, budget, machine and precision, a table of every row (mean over seeds with its 95% interval, train
top-1, the budget check, size, latency), the comparisons and a figure. Runs not done yet show as missing and their
comparisons as pending.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, DataError
from ..io import save_figure, write_text
from ..plotting import pyplot
from . import measures as m
from .checks import CHECKS, INCONCLUSIVE, run_check, run_first_coded
from .context import PlanContext
from .headline import headline_section, published_sections, redraw_headline_figure
from .plan import CODE_CHANGES, CORRECTIONS, EXPERIMENTS, plan, plan_context
from .registration import amendment_hash, correction_hashes, plan_hash
from .seed_claims import SEED_CLAIMS, SeedClaim, seed_claims
from .spec import (
    EVAL_KEYS,
    LAB_DATA,
    Comparison,
    Experiment,
    Rows,
    Settings,
    check_data,
    current_latency,
    data_suffix,
    latency_config,
    read_latency,
    read_meta,
    read_result,
)
from .stats import (
    ALPHA,
    VERDICT_WORDS,
    Interval,
    Test,
    boundary_test,
    decide,
    detectable,
    holm,
    paired_t,
    signflip_test,
    t975,
)
from .tuning import CONFIRM_SEED, val_top1

__all__ = ["Verdict", "comparison_interval", "write_report"]

SEG_METRICS = ("miou", "shifted_miou", "seg_shift_drop")  # the metrics a segmentation section reads
STILL_IMPROVING = 1.0  # points: a row whose gain from B/2 to B is above this (whole 95% interval) is still improving


class _Results:
    def __init__(
        self,
        results: Path,
        data: str,
        latency_batch: int,
        suffix: str | None = None,
        data_name: str | None = None,
    ) -> None:
        self.data, self.info, self.latency_batch = data, LAB_DATA.get(data), latency_batch
        self.suffix = data_suffix(data) if suffix is None else suffix
        self.data_name = data_name or self.info.title
        self.by_key: dict[str, dict] = {}
        for f in sorted((results / "runs").glob("*.json")):
            r = read_result(f)
            self.by_key[r["key"]] = r
        self.results = results

    def rows(self, exp: Experiment) -> Rows:
        """label -> the finished results of its seeds, in plan order.

        A result counts once it holds every measurement the run asks for: a training shared with another
        experiment may exist before this experiment has added its own measurements to it.
        """
        out: Rows = {}
        for run in exp.runs:
            out.setdefault(run.label, [])
            r = self.by_key.get(run.key)
            if r is not None and all(EVAL_KEYS[e] in r for e in run.evals):
                out[run.label].append(r)
        return out

    def latency(self, exp: Experiment) -> dict:
        """The experiment's latency table, with only the rows that timed what the plan now asks ({} if none)."""
        table = read_latency(self.results / f"{exp.key}_latency.json")
        return current_latency(table, exp.latency, exp.latency_batch or self.latency_batch)


def _cell(text: str) -> str:
    """``text`` as one Markdown table cell (row labels hold a ``|``)."""
    return text.replace("|", "\\|")


def _ci(values: list[float | None]) -> str:
    """'mean ± h' with h the half-width of the 95% t-interval of the mean ('mean' alone for one value), over the
    values that are defined; '(n of m seeds)' follows when some are not."""
    defined = [v for v in values if v is not None]
    if not defined:
        return "-"
    part = "" if len(defined) == len(values) else f" ({len(defined)} of {len(values)} seeds)"
    if len(defined) == 1:
        return f"{defined[0]:.2f}{part}"
    half = t975(len(defined) - 1) * statistics.stdev(defined) / len(defined) ** 0.5
    return f"{statistics.mean(defined):.2f} ± {half:.2f}{part}"


def _by_seed(rs: list[dict], metric: str) -> dict[int, float]:
    out = {}
    for r in rs:
        v = m.METRICS[metric].read(r)
        if v is not None:
            out[r["seed"]] = v
    return out


def _labels(c: Comparison) -> list[str]:
    """The rows a comparison reads: a, b and, when it has one, the second pair."""
    return [c.a, c.b, *(c.minus or ())]


def _finished_seeds(c: Comparison, rows: Rows) -> set[int]:
    """The seeds every row of a comparison has a result for, whatever its metric reads."""
    return set.intersection(*({r["seed"] for r in rows.get(label, [])} for label in _labels(c)))


def _registered_seeds(exp: Experiment) -> dict[str, set[int]]:
    """Row label -> the seeds the plan registers for it."""
    seeds: dict[str, set[int]] = {}
    for run in exp.runs:
        seeds.setdefault(run.label, set()).add(run.seed)
    return seeds


def comparison_interval(c: Comparison, rows: Rows) -> Interval | None:
    """The paired interval of a comparison: a - b per seed (minus the second pair's a - b when it has one), over
    the seeds every row involved has finished; None until two seeds have."""
    diffs = comparison_diffs(c, rows)
    return paired_t(diffs, [0.0] * len(diffs))


def comparison_diffs(c: Comparison, rows: Rows) -> list[float]:
    """The per-seed differences of a comparison, over the seeds every row involved has finished."""
    values = [_by_seed(rows.get(label, []), c.metric) for label in _labels(c)]
    seeds = sorted(set.intersection(*(set(v) for v in values))) if values else []
    diffs = []
    for s in seeds:
        d = values[0][s] - values[1][s]
        if c.minus:
            d -= values[2][s] - values[3][s]
        diffs.append(d)
    return diffs


def _gain(rows: Rows, label: str, half: str, metric: str = "top1") -> Interval | None:
    """``metric`` (top-1 by default) gained from B/2 to B by one row, paired by seed."""
    full, short = _by_seed(rows.get(label, []), metric), _by_seed(rows.get(half, []), metric)
    seeds = sorted(set(full) & set(short))
    return paired_t([full[s] for s in seeds], [short[s] for s in seeds])


@dataclass
class Verdict:
    """A comparison of an experiment with its interval, test, the decisions raw and adjusted, and its budget flag."""

    exp: Experiment
    c: Comparison
    interval: Interval | None
    t: Test | None
    raw: str
    p_family: float | None = None
    p_page: float | None = None
    budget: str = ""  # robust, budget-sensitive, no budget check, budget check pending, or "-" (not decided)
    seeds: str = ""  # finished / registered seeds of the comparison
    family_open: int = 0  # comparisons of its family not yet tested (each enters Holm at p = 1)
    page_open: int = 0  # counted comparisons of the page not yet tested
    superseded: str = ""  # the key of the correction that decides its claim instead (it stays, as registered)
    losses: bool = False  # a comparison of two gains whose both changes are below zero

    def adjusted(self, p: float | None) -> str:
        if self.raw in ("pending", "tied", "undefined"):
            return self.raw
        if p is None or self.t is None:
            return "pending"
        return self.t.leaning if p < ALPHA else "undecided"

    @property
    def family(self) -> str:
        """The verdict of record: Holm-adjusted over the counted comparisons of the claim it decides."""
        return self.adjusted(self.p_family) if self.c.counted else self.raw

    def family_as(self, word: str) -> str:
        """The verdict of record in ``word`` (a table's wording of it), with what qualifies it: a registered section
        superseded by a correction; two gains that are both losses; an undecided verdict whose family still waits
        for a comparison (Holm's adjusted p can only fall when a comparison entered at p = 1 gets its test)."""
        if self.superseded:
            word += f" (as registered; superseded by {self.superseded}, which decides the claim)"
        if self.losses and self.family in ("supported", "refuted"):
            word += " (both changes it subtracts are below zero: it weighs two losses, not two gains)"
        pending = self.family == "undecided" and self.family_open
        return f"{word} (for now: {self.family_open} of its family pending)" if pending else word

    def page_as(self, word: str) -> str:
        """The strict verdict in ``word``; undecided 'for now' while any counted comparison of the page is pending."""
        return f"{word} (for now)" if self.page == "undecided" and self.page_open else word

    @property
    def page(self) -> str:
        """The strict verdict: Holm-adjusted over every counted comparison of the page."""
        return self.adjusted(self.p_page) if self.c.counted else self.raw


def _robust(v: Verdict, half: Verdict | None) -> str:
    """The budget check of a decided verdict: does it survive moving its deciding interval end towards the boundary
    by the change of the estimate from B/2 to B (the next doubling, with diminishing returns, moves it less)?"""
    if half is None:
        return "no budget check"
    if half.interval is None or v.interval is None:
        return "budget check pending"
    if v.raw not in ("supported", "refuted"):
        return "-"
    delta = abs(v.interval.mean - half.interval.mean)
    lo, hi = v.interval.low - delta, v.interval.high + delta
    moved = Interval(v.interval.mean, lo, hi, v.interval.n, v.interval.method)
    return "robust" if decide(moved, v.c.kind, v.c.margin) == v.raw else "budget-sensitive"


def _verdicts(exps: list[Experiment], res: _Results, claims: tuple[SeedClaim, ...] = SEED_CLAIMS) -> list[Verdict]:
    out: list[Verdict] = []
    # a registered section whose claim a correction decides instead (not a sensitivity check beside it)
    deciding = {key for claim in claims for key, _ in claim.decided_by} & {e.key for e in exps}
    superseding = {c.replaces: k for k, c in CORRECTIONS.items() if c.ran and k in deciding}
    for exp in exps:
        rows, registered = res.rows(exp), _registered_seeds(exp)
        for c in exp.comparisons:
            diffs = comparison_diffs(c, rows)
            iv = paired_t(diffs, [0.0] * len(diffs))
            if c.test == "signflip":
                t = signflip_test(diffs)
                raw = "pending" if t is None else t.leaning if t.p < ALPHA else "undecided"
            else:
                t = boundary_test(iv, c.kind, c.margin)
                raw = decide(iv, c.kind, c.margin)
            if raw == "undecided" and iv is not None and iv.low == iv.high:  # equal on every seed, e.g. both 100%
                raw = "tied"
            done = _finished_seeds(c, rows)
            planned = set.intersection(*(registered.get(label, set()) for label in _labels(c)))
            if raw == "pending" and len(done) >= 2:  # the runs are there, the metric is not
                raw = "undefined"
            if not planned <= done:  # decided once every registered seed is in, never part-way
                raw = "pending"
            out.append(
                Verdict(
                    exp,
                    c,
                    iv,
                    t,
                    raw,
                    seeds=f"{len(done & planned)}/{len(planned)}",
                    losses=_losses(c, rows),
                    superseded=superseding.get(exp.key, ""),
                )
            )
    by_name = {(v.exp.key, v.c.name): v for v in out}
    for v in out:
        if v.c.deciding:
            v.budget = _robust(v, by_name.get((v.exp.key, f"{v.c.name} (half budget)")))
    # Holm: over each claim's comparisons (the family; a counted comparison no claim names is its experiment's),
    # and over the page. Every registered comparison keeps its place in its family: one not decided (pending or
    # undefined) enters with p = 1, so a family never shrinks to the comparisons that happened to give a test.
    counted = [v for v in out if v.c.counted]
    page_open = sum(not _tested(v) for v in counted)
    for v, p in zip(counted, holm([_p_of(v) for v in counted]), strict=True):
        v.p_page = p if _tested(v) else None
        v.page_open = page_open
    claim_of = {key: i for i, claim in enumerate(claims) for key in claim.decided_by}
    families: dict[object, list[Verdict]] = {}
    for v in counted:
        families.setdefault(claim_of.get((v.exp.key, v.c.name), v.exp.key), []).append(v)
    for family in families.values():
        family_open = sum(not _tested(v) for v in family)
        for v, p in zip(family, holm([_p_of(v) for v in family]), strict=True):
            v.p_family = p if _tested(v) else None
            v.family_open = family_open
    return out


def _change_intervals(c: Comparison, rows: Rows) -> list[Interval | None]:
    """The two changes a change-against-a-change comparison subtracts, each paired by seed (None until known)."""
    pairs = ((c.a, c.b), c.minus or ())
    return [comparison_interval(Comparison(c.name, x, y, metric=c.metric), rows) for x, y in pairs]


def _losses(c: Comparison, rows: Rows) -> bool:
    """Whether a comparison of two gains finds both below zero (its 'helps more' then reads 'harms less')."""
    if not (c.gains and c.minus):
        return False
    parts = _change_intervals(c, rows)
    return all(parts) and all(i.mean < 0 for i in parts)


def _tested(v: Verdict) -> bool:
    """Whether a comparison has a test that decides it (not pending, its metric not undefined)."""
    return v.t is not None and v.raw not in ("pending", "undefined")


def _p_of(v: Verdict) -> float:
    """The p-value a comparison brings to Holm's correction: 1 when it has no test (yet)."""
    return v.t.p if _tested(v) else 1.0


def _p(p: float | None) -> str:
    if p is None:
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _p_of_test(v: Verdict) -> str:
    """A comparison's raw p value, marked when the sign-flip test gave it (its interval is then a t interval)."""
    return _p(v.t.p if v.t else None) + (" (sign-flip)" if v.c.test == "signflip" and v.t else "")


CheckResult = tuple[bool | str | None, str]  # passed, failed, inconclusive or pending; its detail
Checked = dict[str, CheckResult]  # check name -> its result


def _claim_verdict(claim: SeedClaim, found: list[Verdict], checks: Checked) -> tuple[str, str, bool]:
    """A claim's verdict and strict reading from its comparisons' and checks' results, and whether its comparisons
    decided it (rather than a check, or their absence)."""
    result = {c: checks.get(c, (None, ""))[0] for c in claim.checks}
    failed = [c for c, r in result.items() if r is False]
    inconclusive = any(r == INCONCLUSIVE for r in result.values())
    if not claim.decided_by:
        if all(r is True for r in result.values()):
            return "checked", "checked", False
        word = "refuted (a check failed)" if failed else "undecided (a check is inconclusive)" if inconclusive else ""
        return (word, word, False) if word else ("pending", "pending", False)
    if len(found) < len(claim.decided_by):
        return "not in this plan", "not in this plan", False
    if any(CHECKS[c].on_fail == "refutes" for c in failed):
        return "refuted (a check failed)", "refuted (a check failed)", False
    if failed:
        return "undecided (a check its test needs failed)", "undecided (a check its test needs failed)", False
    if any(r is None for r in result.values()):
        return "pending (a check has not run)", "pending (a check has not run)", False
    verdict = _combine([v.family for v in found])
    strict = _combine([v.page for v in found])
    if inconclusive:  # supported needs the check as well; a refutation stands without it
        verdict, strict = (w if w != "supported" else "undecided (a check is inconclusive)" for w in (verdict, strict))
    if strict == "undecided" and any(v.page_open for v in found):
        strict += " (for now)"
    # the tag of the comparisons that decide the claim's verdict (all of them for supported, the refuting ones for
    # refuted), never of one that went the other way
    if verdict in ("supported", "refuted") and any(
        v.family == verdict and v.budget == "budget-sensitive" for v in found
    ):
        verdict += " (budget-sensitive)"
    return verdict, strict, True


def _claims_table(
    verdicts: list[Verdict],
    checks: Checked,
    claims: tuple[SeedClaim, ...] = SEED_CLAIMS,
    first_coded: Checked | None = None,
) -> list[str]:
    """The claims of the mission with their verdicts; ``first_coded`` holds the results of checks corrected after
    their results, as first coded: a claim whose verdict they would change shows that verdict beside its own."""
    by_name = {(v.exp.key, v.c.name): v for v in verdicts}
    lines = [
        "| claim | source | verdict | over the whole page | decided by |",
        "|---|---|---|---|---|",
    ]
    for claim in claims:
        if claim.untestable:
            lines.append(
                f"| {_cell(claim.claim)} | {claim.source} | not testable here | - | {_cell(claim.untestable)} |"
            )
            continue
        vs = [by_name.get(key) for key in claim.decided_by]
        parts = [f"{v.c.name}: {v.family_as(_word(v.family))}" for v in vs if v is not None]
        parts += [f"check '{CHECKS[c].title}': {_check_word(checks.get(c))}" for c in claim.checks]
        found = [v for v in vs if v is not None]
        verdict, strict, compared = _claim_verdict(claim, found, checks)
        corrected = {c: r for c, r in (first_coded or {}).items() if c in claim.checks}
        if corrected and (first := _claim_verdict(claim, found, {**checks, **corrected})[0]) != verdict:
            verdict += f", by a check corrected after its result; as first coded: {first}"
        if compared:  # decided by a correction made after results: the registered design's verdict stands beside it
            after = {k: CORRECTIONS[k].replaces for k, _ in claim.decided_by if k in CORRECTIONS and CORRECTIONS[k].ran}
            registered = [by_name.get((after.get(k, k), name)) for k, name in claim.decided_by]
            if after and all(registered):
                verdict += (
                    f", by a correction made after results; as registered: {_combine([v.family for v in registered])}"
                )
        lines.append(
            f"| {_cell(claim.claim)} | {claim.source} | **{verdict}** | {strict} | {_cell('; '.join(parts))} |"
        )
    named = {key for claim in claims for key in claim.decided_by}
    for v in verdicts:  # registered, counted, and no claim's: a family with its experiment's others
        if v.c.counted and not v.superseded and (v.exp.key, v.c.name) not in named:
            word = v.family_as(_word(v.family))
            lines.append(
                f"| {_cell(v.c.name)} ({_cell(v.exp.title)}; a registered comparison no claim names) | - | "
                f"**{word}** | {v.page_as(_word(v.page))} | {_cell(v.c.name)}: {word} |"
            )
    return lines


def _combine(verdicts: list[str]) -> str:
    """A claim's verdict from its comparisons': refuted if any is, supported if all are, else undecided."""
    if "refuted" in verdicts:
        return "refuted"
    if "pending" in verdicts:
        return "pending"
    return "supported" if all(v == "supported" for v in verdicts) else "undecided"


def _word(decision: str) -> str:
    """A decision as the page's tables print it: its own word, but a tie is undecided and an undefined metric gives
    no verdict (the words of the sections' tables)."""
    return VERDICT_WORDS[decision] if decision in ("tied", "undefined") else decision


def _check_word(result: CheckResult | None) -> str:
    if result is None or result[0] is None:
        return "pending"
    if result[0] == INCONCLUSIVE:
        return INCONCLUSIVE
    return "passed" if result[0] else "failed"


def _verdict_table(verdicts: list[Verdict]) -> list[str]:
    lines = [
        "| experiment | comparison | rule | estimate [95% interval] | seeds | p | p, Holm (family) | p, Holm (page) "
        "| raw | **family (the verdict)** | page | detectable (80% power) | budget |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---|---|---:|---|",
    ]
    for v in verdicts:
        if not v.c.counted:
            continue
        iv = v.interval
        mde = None if v.c.test == "signflip" else detectable(iv)  # a sign-flip row's t interval is for scale
        lines.append(
            f"| {v.exp.key} | {_cell(v.c.name)} | `{_cell(v.c.rule)}` | {iv if iv else '-'} | "
            f"{v.seeds} | {_p_of_test(v)} | {_p(v.p_family)} | {_p(v.p_page)} | {_word(v.raw)} | "
            f"**{v.family_as(_word(v.family))}** | {v.page_as(_word(v.page))} | "
            f"{f'{mde:.2f}' if mde is not None else '-'} | {v.budget} |"
        )
    return lines


def _tuning_section(exp: Experiment, res: _Results, chosen_rates: dict[str, float]) -> list[str]:
    rows = res.rows(exp)
    fams: dict[str, dict[float, float]] = {}
    confirmed: dict[str, dict[float, float]] = {}  # the confirming seed of two close rates
    for label, rs in rows.items():
        fam, lr = label.rsplit(" | lr ", 1)
        lr = float(lr.partition(" | seed ")[0])  # a family's confirming runs are rows of their own; a fine-tuning's
        fams.setdefault(fam, {})  # share their row with the tuning seed's
        for r in rs:
            (confirmed.setdefault(fam, {}) if r["seed"] == CONFIRM_SEED else fams[fam])[lr] = val_top1(r)
    rates = sorted({lr for scores in fams.values() for lr in scores})
    lines = [
        f"## {exp.title}",
        "",
        f"**Protocol.** {exp.budget}. Validation top-1 (%) at the last epoch (mean IoU (%) for the segmentation "
        "families, `seg:`); the chosen rate in bold; a run whose loss became NaN counts at chance (a mean IoU of 0); "
        "`a / b`: a close rate's score on the tuning seed and on the confirming "
        "seed (it only chooses between the two: the ladder is not extended on it, even when it prefers the rate at an "
        "end of the ladder). Every verdict run trains at its family's chosen rate.",
        "",
        "| family | chosen rate |" + "".join(f" {lr:.3g} |" for lr in rates),
        "|---|---:|" + "---:|" * len(rates),
    ]
    for fam, scores in fams.items():
        best = chosen_rates.get(fam)  # decided by the protocol: none while a family's ladder is still growing
        cells = []
        for lr in rates:
            if lr not in scores:
                cells.append("")
            else:
                text = f"{scores[lr]:.2f}"
                if lr in confirmed.get(fam, {}):
                    text += f" / {confirmed[fam][lr]:.2f}"
                # the labels hold rates as printed (:g); the chosen rate is exact (a base rate x 1/3, say)
                cells.append(f"**{text}**" if best is not None and f"{lr:g}" == f"{best:g}" else text)
        chosen = f"{best:.3g}" if best is not None else "pending"
        lines.append(f"| {_cell(fam)} | {chosen} |" + "".join(f" {c} |" for c in cells))
    return [*lines, ""]


def _machines(exp: Experiment, res: _Results, rows: Rows) -> str:
    """Where the section's runs were trained and in what precision, and where its latency was timed."""
    counts = Counter(
        (r.get("machine", "a machine not recorded"), r.get("precision", "a precision not recorded"))
        for rs in rows.values()
        for r in rs
    )
    trained = "; ".join(f"{mach}: {n} run{'s' if n > 1 else ''} in {p}" for (mach, p), n in counts.items())
    timed = res.latency(exp).get("machine")
    where = (
        ""
        if timed is None
        else " Latency timed on the same machine."
        if {k for k, _ in counts} == {timed}
        else f" Latency timed on {timed}."
    )
    return f"**Machine and precision.** {trained or 'nothing trained yet'}.{where}"


def _validation(exp: Experiment) -> str:
    """The held-out validation images of the experiment's runs, as its budget line states them."""
    sizes = sorted({int(r.train["val_size"]) for r in exp.runs if r.train.get("val_size")})
    return f"validation: {' or '.join(map(str, sizes))} held-out training images; " if sizes else ""


def _header(exp: Experiment, res: _Results, rows: Rows, verdicts: list[Verdict], checked: Checked) -> list[str]:
    seeds = sorted({r["seed"] for rs in rows.values() for r in rs})
    by_word: dict[str, list[str]] = {}  # the section's counted verdicts, grouped by decision in order of appearance
    for v in verdicts:
        if v.c.counted:
            by_word.setdefault(v.family_as(VERDICT_WORDS.get(v.family, v.family)), []).append(v.c.name)
    # a check that did not pass decides as much as a comparison: it stands beside them
    by_word.update({f"check {_check_word(r)}": [CHECKS[c].title] for c, r in checked.items() if r[0] is not True})
    outcome = "; ".join(word + ": " + ", ".join(f'"{n}"' for n in names) for word, names in by_word.items())
    lines = [
        f"## {exp.title}",
        "",
        # the registered title and hypothesis state what is tested; what the runs decided comes first
        *([f"**Verdicts.** {outcome}.", ""] if by_word else []),
        f"**Hypothesis.** {exp.hypothesis}",
        "",
        f"**Refuted by.** {exp.refutation}",
        "",
        f"**The paper.** {exp.paper}",
        "",
        f"**Budget.** {exp.budget}; {_validation(exp)}seeds: {', '.join(map(str, seeds)) or 'none yet'}.",
        "",
        _machines(exp, res, rows),
        "",
    ]
    return lines + ([exp.notes, ""] if exp.notes else [])


def _timed_as(exp: Experiment) -> dict[str, str]:
    """Row label -> the latency entry timing the same model and config (a row and its half-budget twin share one);
    a run builds its model at its data's image size unless its arguments say otherwise."""
    out = {}
    for run in exp.runs:
        info = LAB_DATA.get(run.data)
        size = {"img_size": info.size} if info else {}
        mine = latency_config(run.model, {**size, **run.model_args})
        for label, (name, args) in exp.latency.items():
            if latency_config(name, {**size, **args}) == mine:
                out[run.label] = label
    return out


def _twin_seeds(rows: Rows, halves: set[str]) -> str:
    """The seeds the half-budget twins ran, when fewer than the rows': the gain and the budget check use those."""
    twins = sorted({r["seed"] for h in halves for r in rows.get(h, [])})
    full = {r["seed"] for label, rs in rows.items() if label not in halves for r in rs}
    return f" (on the twins' seeds, {', '.join(map(str, twins))})" if twins and not full <= set(twins) else ""


def _table(exp: Experiment, res: _Results, rows: Rows) -> list[str]:
    metric = m.METRICS[exp.metric]
    timing = res.latency(exp)
    lat = timing.get("rows", {})
    timed = _timed_as(exp)
    columns = [c for c in exp.columns if c != exp.metric]
    halves = set(exp.budget_pairs.values())
    head = f"| row | seeds | {metric.title} |" + "".join(f" {m.METRICS[c].title} |" for c in columns)
    train = "pixel accuracy" if exp.metric in SEG_METRICS else "top-1"
    head += f" last-epoch train {train} (%) |" if "train_top1" not in columns else ""
    head += " gain from B/2 to B (points) |" if exp.budget_pairs else ""
    head += " params (M) | MMACs |" + (" latency (ms) |" if lat else "")
    ncols = head.count("|") - 1
    lines = [head, "|---|" + "---:|" * (ncols - 1)]
    for label, rs in rows.items():
        if label in halves:
            continue
        values = [metric.read(r) for r in rs]
        diverged = sum(bool(r.get("diverged")) for r in rs)
        seeds = f"{len(rs)}" + (f" ({diverged} diverged)" if diverged else "")
        cells = f"| {_cell(label)} | {seeds} | {_ci(values)} |"
        cells += "".join(f" {_ci([m.METRICS[c].read(r) for r in rs])} |" for c in columns)
        if "train_top1" not in columns:
            cells += f" {_ci([m.last_train_top1(r) for r in rs])} |"
        if exp.budget_pairs:
            half = exp.budget_pairs.get(label)
            g = _gain(rows, label, half, exp.metric) if half else None
            mark = "" if g is None or g.low <= STILL_IMPROVING else " (**still improving**)"
            cells += f" {g}{mark} |" if g else " - |"
        size = f"{rs[0]['deploy_params'] / 1e6:.2f} | {rs[0]['deploy_macs'] / 1e6:.1f}" if rs else "- | -"
        cells += f" {size} |"
        if lat:
            key = timed.get(label)
            cells += f" {lat[key]['median_ms']:.2f} |" if key in lat else " - |"
        lines.append(cells)
    lines += [
        "",
        "± is the half-width of the 95% t-interval of the mean over seeds."
        + (
            f" Gain from B/2 to B: the row's {metric.title.removesuffix(' (%)')} minus its half-budget twin's, "
            f"paired by seed{_twin_seeds(rows, halves)}; marked still "
            f"improving when the whole interval lies above {STILL_IMPROVING:g} point. Whether a verdict depends on "
            "the budget is the 'budget' column of the comparisons."
            if exp.budget_pairs
            else ""
        ),
    ]
    if exp.latency and set(lat) != set(exp.latency):
        done = len(set(exp.latency) & set(lat))
        lines += [
            "",
            f"Latency: {f'only {done}' if done else 'none'} of its {len(exp.latency)} models timed so far in the "
            "configuration and batch the plan asks: `mlpvision lab --latency-only` times them on an idle machine.",
        ]
    if lat:
        extra = [k for k in lat if k not in timed.values()]
        lines += [
            "",
            f"Latency: deploy forms, eager float32, batch {timing['batch_size']}, {timing['threads']} threads, all "
            "models timed round-robin in one run (median)"
            + (": " + "; ".join(f"{k} {lat[k]['median_ms']:.2f} ms" for k in extra) if extra else "")
            + ".",
        ]
    return lines


def _points(x: float) -> str:
    return f"{x:g} point{'' if x == 1 else 's'}"


def _margin_scale(c: Comparison, rows: Rows) -> str:
    """A top-1 margin as the share of the errors of its b row, measured (a margin's reason was written before the
    runs, from an accuracy it expected)."""
    if c.metric != "top1" or c.minus:
        return ""
    values = [m.top1(r) for r in rows.get(c.b, [])]
    if not values or statistics.mean(values) >= 100:
        return ""
    mean = statistics.mean(values)
    return f"; measured, that is {100 * c.margin / (100 - mean):.1f}% of the errors of '{c.b}' (top-1 {mean:.2f}%)"


def _comparisons(verdicts: list[Verdict], rows: Rows) -> list[str]:
    lines = [
        "| comparison | rule | a - b, 95% interval | p | verdict (raw) | verdict (Holm over its family) | budget |",
        "|---|---|---:|---:|---|---|---|",
    ]
    for v in verdicts:
        c = v.c
        tag = " (exploratory)" if c.exploratory else "" if c.deciding else " (not counted)"
        page = v.family_as(VERDICT_WORDS.get(v.family, v.family)) if c.counted else "-"
        lines.append(
            f"| {_cell(c.name + tag)} | `{_cell(c.rule)}` | {v.interval if v.interval else '-'} | "
            f"{_p_of_test(v)} | {VERDICT_WORDS.get(v.raw, v.raw)} | {page} | {v.budget or '-'} |"
        )
    margins = [c for c in (v.c for v in verdicts) if c.margin and c.reason and c.counted]
    lines += [""]
    lines += [f"Margin of '{c.name}' ({_points(c.margin)}{_margin_scale(c, rows)}): {c.reason}." for c in margins]
    explo = [c for c in (v.c for v in verdicts) if c.exploratory]
    lines += [f"'{c.name}' is exploratory: {c.exploratory}." for c in explo]
    lines += [text for v in verdicts if v.c.minus and (text := _changes(v, rows))]
    return lines


def _changes(v: Verdict, rows: Rows) -> str:
    """The two changes a change-against-a-change comparison subtracts, each with its interval ('' until known):
    where they are gains and both are below zero, 'helps more' reads 'harms less'."""
    c = v.c
    parts = _change_intervals(c, rows)
    if not all(parts):
        return ""
    both = (
        " Both gains are below zero: the comparison weighs two losses, and 'more' here means the smaller harm."
        if v.losses
        else ""
    )
    return (
        f"'{c.name}' subtracts two changes: '{c.a}' - '{c.b}' is {parts[0]}, '{c.minus[0]}' - '{c.minus[1]}' is "
        f"{parts[1]}.{both}"
    )


def _plot_curves(exp: Experiment, rows: Rows, path: Path, data_name: str) -> str | None:
    if not exp.curves or not any(rows.values()):
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    metric = m.METRICS[exp.metric]
    for curve in exp.curves:
        xs, ys, errs = [], [], []
        for label, x in zip(curve.labels, curve.xs, strict=True):
            values = [v for v in (metric.read(r) for r in rows.get(label, [])) if v is not None]
            if values:
                xs.append(x)
                ys.append(statistics.mean(values))
                n = len(values)
                errs.append(t975(n - 1) * statistics.stdev(values) / n**0.5 if n > 1 else 0.0)
        if xs:
            ax.errorbar(xs, ys, yerr=errs, fmt="o-", capsize=3, label=curve.name)
    if exp.logx:
        ax.set_xscale("log")
        xs = sorted({x for c in exp.curves for x in c.xs})
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.minorticks_off()
    ax.set(xlabel=exp.xlabel, ylabel=metric.title, title=f"{exp.title}\n({data_name}; mean and 95% interval)")
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path.name


def _plot_rows(exp: Experiment, rows: Rows, path: Path, data_name: str) -> str | None:
    """A dot plot of every row (mean and 95% interval): the half-budget twins and the ``figure_columns`` beside
    their rows."""
    shown = [(label, rs) for label, rs in rows.items() if rs and label not in exp.budget_pairs.values()]
    if not shown:
        return None
    plt = pyplot()
    metric = m.METRICS[exp.metric]
    extra = [m.METRICS[c] for c in exp.figure_columns]
    main = "budget B" if exp.budget_pairs else metric.title if extra else None
    step = 0.5 / (len(extra) + 1)
    fig, ax = plt.subplots(figsize=(7, (0.45 + 0.2 * len(extra)) * len(shown) + 1.4))
    named: set[str] = set()  # each series named once in the legend, wherever it first appears
    for i, (label, rs) in enumerate(reversed(shown)):
        series = [(0.0, rows.get(label, []), metric, "C0", main)]
        if label in exp.budget_pairs:
            series.append((-0.25, rows.get(exp.budget_pairs[label], []), metric, "C1", "B/2"))
        series += [((j + 1) * step, rs, x, f"C{j + 2}", x.title) for j, x in enumerate(extra)]
        for offset, results, what, color, name in series:
            values = [v for v in (what.read(r) for r in results) if v is not None]
            if not values:
                continue
            n = len(values)
            err = t975(n - 1) * statistics.stdev(values) / n**0.5 if n > 1 else 0.0
            ax.errorbar(
                statistics.mean(values),
                i + offset,
                xerr=err,
                fmt="o",
                color=color,
                capsize=3,
                label=name if name not in named else None,
            )
            named.add(name)
    ax.set_yticks(range(len(shown)), [label for label, _ in reversed(shown)], fontsize=8)
    xlabel = exp.xlabel if extra and exp.xlabel else metric.title
    ax.set(xlabel=xlabel, title=f"{exp.title}\n({data_name}; mean and 95% interval over seeds)")
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3, axis="x")
    if main:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path.name


def _sharing(exps: list[Experiment]) -> dict[str, list[Experiment]]:
    """Each run's key -> the experiments that hold it (a run serves every section that asks for it)."""
    out: dict[str, list[Experiment]] = {}
    for exp in exps:
        for run in exp.runs:
            if exp not in out.setdefault(run.key, []):
                out[run.key].append(exp)
    return out


def _shared_rows(exp: Experiment, sharing: dict[str, list[Experiment]]) -> str:
    """Which of the section's rows (at its budget) are the same runs as rows of other sections, and where."""
    halves = set(exp.budget_pairs.values())
    by_row: dict[str, list[str]] = {}
    for run in exp.runs:
        if run.label not in halves:
            by_row.setdefault(run.label, []).append(run.key)
    parts = []
    for label, keys in by_row.items():
        others = [e for e in sharing.get(keys[0], []) if e is not exp and all(e in sharing[k] for k in keys)]
        if others:
            parts.append(f"'{label}' (also in " + "; ".join(f"'{e.title}'" for e in others) + ")")
    return "Rows that are the same runs as another section's: " + ", ".join(parts) + "." if parts else ""


def _section(
    exp: Experiment,
    res: _Results,
    figures: Path,
    verdicts: list[Verdict],
    sharing: dict[str, list[Experiment]],
    ran: dict[str, tuple[CheckResult, CheckResult | None]],
) -> list[str]:
    """A section of the page; ``ran`` holds its checks' results (and, for a corrected check, its first result)."""
    rows = res.rows(exp)
    body = _table(exp, res, rows)
    if shared := _shared_rows(exp, sharing):
        body += ["", shared]
    if verdicts:
        body += ["", *_comparisons(verdicts, rows)]
    if ran:
        body += ["", *[f"Check: {CHECKS[c].title}: {_check_line(c, r, first)}." for c, (r, first) in ran.items()]]
    path = figures / f"lab{res.suffix}_{exp.key}.png"
    name = _plot_curves(exp, rows, path, res.data_name) if exp.curves else _plot_rows(exp, rows, path, res.data_name)
    if name is None:
        path.unlink(missing_ok=True)  # a figure of earlier results must not outlive them
    if name:
        body += ["", f"![{exp.title}](figures/{name})"]
    return [*_header(exp, res, rows, verdicts, {c: r for c, (r, _) in ran.items()}), *body, ""]


def _run_checks(exp: Experiment, res: _Results) -> dict[str, tuple[CheckResult, CheckResult | None]]:
    """Each check of ``exp``, run once with its rows, its latency table and the latency entries it plans: its result
    and, for a check corrected after its result, its result as first coded (else None)."""
    context = {"rows": res.rows(exp), "latency": res.latency(exp), "planned": exp.latency}
    return {c: (run_check(c, **context), run_first_coded(c, **context)) for c in exp.checks}


def _check_line(name: str, result: CheckResult, first: CheckResult | None) -> str:
    """A check's result and detail; a check corrected after its result says when and why, and its first result."""
    if first is None:
        return _check_text(result)
    return f"{_check_text(result)}; {CHECKS[name].changed}; as first coded: **{_check_word(first)}**"


def _check_text(result: CheckResult) -> str:
    return f"**{_check_word(result)}** ({result[1]})"


def _waiting_for_tuning(settings: Settings, results: Path) -> dict[str, set[str]]:
    """Experiment key -> the families it trains whose rate the tuning has not chosen yet."""
    base, _ = plan_context(settings, results)  # the result files are read once
    out = {}
    for experiment in EXPERIMENTS:
        p = PlanContext(base.s, base.size, base.tuning)  # a fresh record of the families this experiment asks
        key = experiment(p).key
        if p.untuned:
            out[key] = set(p.untuned)
    return out


def write_report(
    results: str | Path = "results/lab", docs: str | Path = "docs", headline: Path | list[Path] | None = None
) -> Path:
    """Regenerates ``docs/results.md`` (``results-<data>.md`` off Fashion-MNIST) and the lab figures from the
    JSON files under ``results``, with the headline comparison and the published models first; returns the page."""
    results, docs = Path(results), Path(docs)
    figures = docs / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    meta_path = results / "meta.json"
    meta = read_meta(meta_path)
    fields = Settings.__dataclass_fields__
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in meta.get("settings", {}).items() if k in fields}
    try:
        settings = Settings(**given)
        check_data(settings.data)
    except (TypeError, ValueError, ConfigError) as e:
        raise DataError(f"lab meta file {meta_path} is damaged ({e}): rerun the lab to rewrite it") from None
    res = _Results(results, settings.data, settings.latency_batch)
    exps = plan(settings, results)
    waiting = _waiting_for_tuning(settings, results)
    for exp in exps:  # rows of a family whose rate is not chosen yet would be default-rate runs: not shown
        if exp.key in waiting:
            exp.runs = []
            exp.notes = f"Waiting for the tuning of: {', '.join(sorted(waiting[exp.key]))}. " + exp.notes
    claims = [e for e in exps if e.kind == "claim"]
    mission = seed_claims(settings)  # built once: the verdicts' families and the claims table read it
    verdicts = _verdicts(claims, res, mission)
    ran = {exp.key: _run_checks(exp, res) for exp in claims}  # each check once: the sections and tables read it
    checks: Checked = {c: r for by_check in ran.values() for c, (r, _) in by_check.items()}
    # checks corrected after their results, as first coded
    first_coded: Checked = {c: f for by_check in ran.values() for c, (_, f) in by_check.items() if f is not None}
    flag = "" if not res.suffix else f" --data {settings.data}"
    registered = meta.get("plan_hash")
    current, amendment = plan_hash(settings), amendment_hash(settings)
    started = meta.get("correction_hashes") or {}
    corrections = "; ".join(
        f"`{h}` ({CORRECTIONS[k].summary}"
        + ("" if started.get(k, h) == h else "; **changed since the runs began**")
        + ")"
        for k, h in correction_hashes(settings).items()
    )
    counted = [v for v in verdicts if v.c.counted]
    lines = [
        f"# The inductive-bias lab: results on {res.data_name}",
        "",
        f"Generated by `mlpvision lab{flag}` from the JSON files under `{results.as_posix()}/` (rerun "
        f"`mlpvision lab{flag} --report-only` to rebuild this page). Data: {res.data_name} "
        f"({res.info.size}x{res.info.size}x{res.info.chans}); every run trains in float32 on a seeded subset of the "
        f"training images ({settings.subset or 'all'} unless a section says otherwise), with training images held out "
        "for validation (each section's budget gives their number), and is tested on the "
        f"{f'first {settings.test_subset}' if settings.test_subset else 'whole'} test set. Mode: "
        f"{'quick (tiny budgets: the figures mean nothing)' if settings.quick else 'full'}. "
        "`mlpvision lab --plan` prints what each experiment costs on this machine.",
        "",
        f"**Plan.** Hash `{current}` ([the registered plan](lab_plan.md)), amendment `{amendment}` (the "
        f"segmentation sections, registered before their runs), corrections {corrections} (each hashed apart; the "
        "plan says why); "
        + "".join(f"a code change after registration ({', '.join(c.sections)}): {c.what}; " for c in CODE_CHANGES)
        + "".join(f"a check's code corrected ('{c.title}'): {c.changed}; " for c in CHECKS.values() if c.changed)
        + (
            f"the runs were started under plan `{registered}`"
            + ("" if registered == current else " (**the plan changed since**: see the exploratory marks)")
            + (
                f" and amendment `{meta['amendment_hash']}`"
                + ("" if meta["amendment_hash"] == amendment else " (**the amendment changed since**)")
                if meta.get("amendment_hash")
                else ""
            )
            if registered
            else "no plan hash recorded with the runs"
        )
        + ". Every verdict row's learning rate comes from the tuning protocol (table below); verdicts are decided by "
        "the rules of "
        f"the plan, with Holm's correction over each claim's comparisons and over the {len(counted)} counted "
        "comparisons of the page ("
        + (
            f"{superseded} of them a registered section's that a correction superseded, kept in so that the "
            "correction cannot loosen the strict reading; "
            if (superseded := sum(bool(v.superseded) for v in verdicts if v.c.counted))
            else ""
        )
        + "a comparison not yet decided enters both with p = 1). A comparison is decided once "
        "every registered seed of its rows has finished, never part-way. A claim is supported when all its "
        "comparisons are, refuted when any is refuted or a check of the claim itself fails, undecided otherwise; when "
        "a check its test needs fails (a teacher too weak to teach), it is undecided.",
        "",
        "## Claims",
        "",
        *_claims_table(verdicts, checks, mission, first_coded),
        "",
        "## Verdicts",
        "",
        "Each counted comparison: its rule, the paired estimate (in points of its metric: top-1 or mean IoU, or of a "
        "share lost to a move, in %) with its 95% interval, the seeds finished of "
        "those registered, the p value against the rule's boundary, Holm-adjusted over the comparisons of the claim "
        "it decides (its family; a comparison no claim names is a family with its experiment's others) and over the "
        "whole page, the decisions (raw; over the family, which is the verdict; over the page, the strict reading), "
        "the smallest true effect the design detects with 80% power, counted from the rule's boundary (0, or its "
        "margin; from the observed spread, before any "
        "correction; '-' for the few-image probes, decided by the sign-flip test, whose t interval is shown for "
        "scale, and where the differences have no spread), and the budget check of its rows ('no budget check' when "
        "its rows have no half-budget twins, 'budget check pending' while the twins train, '-' when the comparison "
        "is not decided, so there is nothing to check): robust when the "
        "decision survives moving its interval's deciding end towards the boundary by the estimate's change from B/2 "
        "to B (the half-budget twins), budget-sensitive when it does not (it holds at B, but another doubling of the "
        "budget could undo it). An undecided verdict whose family still has a comparison pending says 'for now': "
        "each pending comparison enters Holm's correction at p = 1, so the adjusted p values can only fall as the "
        "rest arrive; an undecided strict reading says so while any comparison of the page is pending. A "
        "section's params and MMACs are of the deploy form (what `mlpvision deploy` exports), unless its notes say "
        "otherwise.",
        "",
        *_verdict_table(verdicts),
        "",
    ]
    tuning = next((e for e in exps if e.kind == "tuning"), None)
    if tuning is not None:
        lines += _tuning_section(tuning, res, plan_context(settings, results)[0].tuning.rates)
    lines += ["## Checks", "", "| check | result |", "|---|---|"]
    lines += [f"| {CHECKS[c].title} | {_check_line(c, r, first_coded.get(c))} |" for c, r in checks.items()]
    lines += [""]
    redraw_headline_figure(results, figures)
    lines += headline_section(results)
    lines += published_sections(headline, docs)
    sharing = _sharing(claims)
    for exp in claims:
        lines += _section(exp, res, figures, [v for v in verdicts if v.exp is exp], sharing, ran[exp.key])
    lines += [
        "## Cost scaling",
        "",
        "Mixer's cost grows linearly with the number of patches, ViT's attention "
        "quadratically, External Attention's linearly: see [scaling.md](scaling.md).",
        "",
    ]
    out = docs / f"results{res.suffix}.md"
    write_text(out, "\n".join(lines))
    return out


PAPER_DATA_NAMES = {"cifar10": "CIFAR-10", "imagefolder": "an ImageNet-style folder"}


def write_paper_report(results: str | Path, docs: str | Path, data: str) -> Path:
    """The ``paper`` profile's page (``docs/results-paper-<data>.md``) from the JSON files under ``results``: each
    experiment's rows and comparisons as the lab's page shows them, Holm's correction over the page."""
    # the profile builds on the runner, which imports this module's neighbours
    from .paper import paper_plan, paper_settings

    results, docs = Path(results), Path(docs)
    figures = docs / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    suffix = f"-paper-{data}"
    res = _Results(results, data, paper_settings(data).latency_batch, suffix, PAPER_DATA_NAMES.get(data, data))
    exps = paper_plan(data)
    verdicts = _verdicts(exps, res)
    lines = [
        f"# The papers' experiments at their sizes: results on {res.data_name}",
        "",
        f"Generated by `mlpvision lab --profile paper --data {data}` from the JSON files under "
        f"`{results.as_posix()}/` (add `--report-only` to rebuild this page). The papers' models, recipes and "
        "budgets (see `mlpvision.lab.paper`); every comparison pairs its two models seed by seed, with Holm's "
        "correction over the comparisons of its experiment (the verdict) and over the page; a comparison is decided "
        "once every registered seed of its rows has finished.",
        "",
        "## Verdicts",
        "",
        *_verdict_table(verdicts),
        "",
    ]
    sharing = _sharing(exps)
    for exp in exps:
        lines += _section(exp, res, figures, [v for v in verdicts if v.exp is exp], sharing, _run_checks(exp, res))
    out = docs / f"results{suffix}.md"
    write_text(out, "\n".join(lines))
    return out
