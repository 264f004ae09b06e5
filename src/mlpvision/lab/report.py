"""docs/results.md and docs/figures/lab_*.png (results-cifar10.md, lab-cifar10_*.png for CIFAR-10, ...),
generated from the lab's JSON results alone.

Each experiment gets its hypothesis, what would refute it and the paper's effect size; its budget (data, epochs,
seeds, precision, machine); a table of every row with the mean over seeds and its 95% interval, the last-epoch train
top-1 and the plateau check; and one verdict per comparison, computed from paired differences by a stated rule.
Runs not done yet show as missing and their comparisons as pending.
"""

from __future__ import annotations

import json
import os
import statistics
from collections import Counter
from pathlib import Path

from ..io import save_figure, write_text
from ..plotting import pyplot
from . import measures as m
from .plan import plan
from .publish import TEACHER_ROLE
from .spec import EVAL_KEYS, LAB_DATA, Comparison, Experiment, Rows, Settings, data_suffix
from .stats import Interval, decide, paired_t, t975

__all__ = ["comparison_interval", "write_report"]

VERDICT_WORDS = {
    "supported": "**supported**",
    "refuted": "**refuted**",
    "undecided": "undecided (the interval spans the boundary)",
    "tied": "undecided (tied on every seed: the test cannot separate them)",
    "pending": "pending (runs missing)",
}


class _Results:
    def __init__(self, results: Path, data: str) -> None:
        self.data, self.info, self.suffix = data, LAB_DATA[data], data_suffix(data)
        self.data_name = self.info.title
        self.by_key: dict[str, dict] = {}
        for f in sorted((results / "runs").glob("*.json")):
            r = json.loads(f.read_text())
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
        path = self.results / f"{exp.key}_latency.json"
        return json.loads(path.read_text()) if path.is_file() else {}


def _cell(text: str) -> str:
    """``text`` as one Markdown table cell (row labels hold a ``|``)."""
    return text.replace("|", "\\|")


def _ci(values: list[float]) -> str:
    """'mean ± h' with h the half-width of the 95% t-interval of the mean ('mean' alone for one value)."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    half = t975(len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5
    return f"{statistics.mean(values):.2f} ± {half:.2f}"


def _by_seed(rs: list[dict], metric: str) -> dict[int, float]:
    return {r["seed"]: m.METRICS[metric][1](r) for r in rs}


def comparison_interval(c: Comparison, rows: Rows) -> Interval | None:
    """The paired interval of a comparison: a - b per seed (minus the second pair's a - b when it has one), over
    the seeds every row involved has finished; None until two seeds have."""
    labels = [c.a, c.b, *(c.minus or ())]
    values = [_by_seed(rows.get(label, []), c.metric) for label in labels]
    seeds = sorted(set.intersection(*(set(v) for v in values))) if values else []
    diffs = []
    for s in seeds:
        d = values[0][s] - values[1][s]
        if c.minus:
            d -= values[2][s] - values[3][s]
        diffs.append(d)
    return paired_t(diffs, [0.0] * len(diffs))


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
        else (f" Latency timed on {timed}.")
    )
    return f"**Machine and precision.** {trained or 'nothing trained yet'}.{where}"


def _header(exp: Experiment, res: _Results, rows: Rows) -> list[str]:
    seeds = sorted({r["seed"] for rs in rows.values() for r in rs})
    lines = [
        f"## {exp.title}",
        "",
        f"**Hypothesis.** {exp.hypothesis}",
        "",
        f"**Refuted by.** {exp.refutation}",
        "",
        f"**The paper.** {exp.paper}",
        "",
        f"**Budget.** {exp.budget}; seeds: {', '.join(map(str, seeds)) or 'none yet'}.",
        "",
        _machines(exp, res, rows),
        "",
    ]
    return lines + ([exp.notes, ""] if exp.notes else [])


def _table(exp: Experiment, res: _Results, rows: Rows) -> list[str]:
    metric_name = m.METRICS[exp.metric][0]
    lat = res.latency(exp).get("rows", {})
    extra = exp.key == "resolution"
    head = f"| row | seeds | {metric_name} | last-epoch train top-1 (%) | plateau gain (points) | params (M) | MMACs |"
    lines = [
        head + (" expanded, before fine-tuning (%) |" if extra else "") + (" latency (ms) |" if lat else ""),
        "|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if extra else "") + ("---:|" if lat else ""),
    ]
    for label, rs in rows.items():
        values = [m.METRICS[exp.metric][1](r) for r in rs]
        train = [t for t in (m.train_top1(r) for r in rs) if t is not None]
        gains = [g for g in (m.plateau_gain(r) for r in rs) if g is not None]
        diverged = sum(bool(r.get("diverged")) for r in rs)
        seeds = f"{len(rs)}" + (f" ({diverged} diverged)" if diverged else "")
        size = f"{rs[0]['deploy_params'] / 1e6:.2f} | {rs[0]['deploy_macs'] / 1e6:.1f}" if rs else "- | -"
        cells = f"| {_cell(label)} | {seeds} | {_ci(values)} | {_ci(train)} | {_ci(gains)} | {size} |"
        if extra:
            cells += f" {_ci([r['expanded_top1'] for r in rs if 'expanded_top1' in r])} |"
        if lat:
            key = next((k for k in lat if label.startswith(k)), None)
            cells += f" {lat[key]['median_ms']:.2f} |" if key else " - |"
        lines.append(cells)
    lines += [
        "",
        "± is the half-width of the 95% t-interval of the mean over seeds. The plateau gain is the validation top-1 "
        "gained over the last 20% of the epochs: near 0, the model was trained to a plateau.",
    ]
    if lat:
        timing = res.latency(exp)
        lines += [
            "",
            f"Latency: deploy forms, eager float32, batch {timing['batch_size']}, {timing['threads']} threads, all "
            "models timed round-robin in one run (median).",
        ]
    return lines


def _comparisons(exp: Experiment, rows: Rows) -> tuple[list[str], list[tuple[str, str]]]:
    lines = ["| comparison | rule | a - b, 95% interval | verdict |", "|---|---|---:|---|"]
    verdicts = []
    for c in exp.comparisons:
        interval = comparison_interval(c, rows)
        verdict = decide(interval, c.kind, c.margin)
        if verdict == "undecided" and interval.low == interval.high:  # equal on every seed, e.g. both at 100%
            verdict = "tied"
        rule = c.rule if not c.minus else f"({c.a} - {c.b}) > ({c.minus[0]} - {c.minus[1]})"
        shown = str(interval) if interval else "-"
        name = _cell(c.name + ("" if c.deciding else " (sweep)"))
        lines.append(f"| {name} | {_cell(rule)} | {shown} | {VERDICT_WORDS[verdict]} |")
        if c.deciding:
            verdicts.append((c.name, verdict))
    note = (
        "Intervals: paired by seed, Student's t with n - 1 degrees of freedom; a verdict is decided when the whole "
        "interval is on one side of the rule's boundary."
    )
    return [*lines, "", note], verdicts


def _plot(exp: Experiment, rows: Rows, path: Path) -> str | None:
    if not exp.curves or not any(rows.values()):
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for curve in exp.curves:
        xs, ys, errs = [], [], []
        for label, x in zip(curve.labels, curve.xs, strict=True):
            values = [m.METRICS[exp.metric][1](r) for r in rows.get(label, [])]
            if values:
                xs.append(x)
                ys.append(statistics.mean(values))
                sd = statistics.stdev(values) if len(values) > 1 else 0.0
                errs.append(t975(len(values) - 1) * sd / len(values) ** 0.5 if len(values) > 1 else 0.0)
        if xs:
            ax.errorbar(xs, ys, yerr=errs, fmt="o-", capsize=3, label=curve.name)
    if exp.logx:
        ax.set_xscale("log")
    ax.set(xlabel=exp.xlabel, ylabel=m.METRICS[exp.metric][0], title=exp.title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    return path.name


def _section(exp: Experiment, res: _Results, figures: Path) -> tuple[list[str], list[tuple[str, str]]]:
    rows = res.rows(exp)
    body = _table(exp, res, rows)
    verdicts: list[tuple[str, str]] = []
    if exp.comparisons:
        lines, verdicts = _comparisons(exp, rows)
        body += ["", *lines]
    name = _plot(exp, rows, figures / f"lab{res.suffix}_{exp.key}.png")
    if name:
        body += ["", f"![{exp.title}](figures/{name})"]
    if exp.key == "resmlp_distill":
        body += ["", _teacher_gap(exp, rows)]
    return [*_header(exp, res, rows), *body, ""], verdicts


def _teacher_gap(exp: Experiment, rows: Rows) -> str:
    teacher = rows.get("teacher", [])
    plain = [label for label in rows if label.startswith("ResMLP | ")]  # the sweep's rows, the largest budget last
    student = rows.get(plain[-1], []) if plain else []
    if not teacher or not student:
        return "Teacher's lead over the student: pending."
    gap = m.top1(teacher[0]) - statistics.mean(m.top1(r) for r in student)
    ok = "at least 2 points: the test can decide" if gap >= 2 else "under 2 points: the test cannot decide the claim"
    return f"Teacher's lead over the undistilled student at the largest budget: {gap:.2f} points ({ok})."


def write_report(
    results: str | Path = "results/lab", docs: str | Path = "docs", headline: Path | list[Path] | None = None
) -> Path:
    """Regenerates ``docs/results.md`` (``results-<data>.md`` off Fashion-MNIST) and the lab figures from the
    JSON files under ``results``, with the headline comparison and the published models first; returns the page."""
    results, docs = Path(results), Path(docs)
    figures = docs / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    meta_path = results / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    settings = Settings(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta.get("settings", {}).items()})
    res = _Results(results, settings.data)
    flag = "" if not res.suffix else f" --data {settings.data}"
    sections, summary = [], []
    for exp in plan(settings):
        lines, verdicts = _section(exp, res, figures)
        sections += lines
        summary += [(exp.title, name, verdict) for name, verdict in verdicts]
    lines = [
        f"# The inductive-bias lab: results on {res.data_name}",
        "",
        f"Generated by `mlpvision lab{flag}` from the JSON files under `{results.as_posix()}/` (rerun "
        f"`mlpvision lab{flag} --report-only` to rebuild this page). Data: {res.data_name} "
        f"({res.info.size}x{res.info.size}x{res.info.chans}); every run trains in float32 on a seeded subset of the "
        f"training images ({settings.subset or 'all'} unless a section says otherwise), {settings.val_size} training "
        "images held out for validation, and is tested on the "
        f"{f'first {settings.test_subset}' if settings.test_subset else 'whole'} test set. Mode: "
        f"{'quick (tiny budgets: the figures mean nothing)' if settings.quick else 'full'}. "
        f"`mlpvision lab --plan` prints what each experiment costs on this machine.",
        "",
        "## Verdicts",
        "",
        "| experiment | comparison | verdict |",
        "|---|---|---|",
        *[f"| {_cell(title)} | {_cell(name)} | {VERDICT_WORDS[v]} |" for title, name, v in summary],
        "",
    ]
    given = [headline] if isinstance(headline, Path) else headline or []
    folders = [f for f in given if (f / "summary.json").is_file()]
    lines += _headline_vs_cnn(results)
    if folders:
        published = {f: json.loads((f / "eval.json").read_text()) for f in folders if (f / "eval.json").is_file()}
        lines += ["## Published models", "", *_attempts_table(published)]
        for folder in folders:
            role = " (distillation teacher)" if published.get(folder, {}).get("role") == TEACHER_ROLE else ""
            head = [f"### `{folder.as_posix()}`{role}", ""] if len(folders) > 1 else []
            lines += head + _headline(folder, published.get(folder), docs)
    lines += sections
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


def _headline_vs_cnn(results: Path) -> list[str]:
    """The all-MLP model against the CNN of the same recipe: accuracy with intervals and CPU latency."""
    path = results / "headline_vs_cnn.json"
    if not path.is_file():
        return []
    h = json.loads(path.read_text())
    lines = [
        "## The all-MLP model against the CNN",
        "",
        f"**Question.** {h['question']}",
        "",
        f"**Models.** {h['models']}",
        "",
        "| model | all-MLP | params (M) | test top-1 (%) | latency batch 1, eager (ms) | batch 1, ONNX Runtime (ms) "
        f"| batch {h['batch']}, eager (ms) | batch {h['batch']}, ONNX Runtime (ms) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in h["rows"]:
        lat = r["latency_ms"]
        times = [lat[f"{b}/{backend}"] for b in (1, h["batch"]) for backend in ("eager", "onnxruntime")]
        lines.append(
            f"| `{r['file']}` | {'yes' if r['all_mlp'] else 'no'} | {r['params'] / 1e6:.2f} | {r['top1']:.2f} | "
            + " | ".join(f"{t:.2f}" for t in times)
            + " |"
        )
    lines += ["", "| comparison | difference (points), 95% interval | verdict |", "|---|---:|---|"]
    for c in h["comparisons"]:
        iv = Interval(**c["interval"])
        lines.append(f"| {c['name']} | {iv} | {VERDICT_WORDS[decide(iv, c['kind'], c['margin'])]} |")
    lines += ["", f"Intervals: {h['method']}. Latency: {h['latency']}, on {h['machine']}.", ""]
    if h.get("figure"):
        lines += [f"![accuracy against latency](figures/{h['figure']})", ""]
    return lines


def _attempts_table(published: dict[Path, dict]) -> list[str]:
    """One row per published folder and its eval.json (validation-selected figures side by side); empty for fewer
    than two."""
    if len(published) < 2:
        return []
    lines = [
        "| published model | parameters | file | best epoch | validation top-1 | test top-1 | target |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for folder, e in published.items():
        size = f"{e['bytes'] / 1e6:.1f} MB" if "bytes" in e else "-"
        target = (
            "none (teacher)"
            if e.get("role") == TEACHER_ROLE
            else f"{e['target_top1']:.1f}%: {'met' if e['met'] else 'not met'}"
        )
        lines.append(
            f"| `{folder.as_posix()}` | {e['params'] / 1e6:.2f} M | {size} | {e['best_epoch']} | "
            f"{e['best_val_top1']:.2f}% | {e['test_top1']:.2f}% | {target} |"
        )
    return [*lines, ""]


def _headline(folder: Path, e: dict | None, docs: Path) -> list[str]:
    """The section of a published model (its summary.json and eval.json ``e``) or of a run folder (``e`` None)."""
    s = json.loads((folder / "summary.json").read_text())
    lines = []
    if e is not None:
        teacher = e.get("role") == TEACHER_ROLE
        verdict = (
            "a distillation teacher of the headline recipes: it need not be all-MLP and has no target"
            if teacher
            else f"target {e['target_top1']:.1f}%: **{'met' if e['met'] else 'not met'}**"
        )
        lines += [
            f"`{s['model']}` trained by `python experiments/headline.py{' --teacher' if teacher else ''}` "
            f"(recipe: `{e['recipe']}`; {s['epochs_done']} epochs, {s['train_seconds'] / 3600:.1f} h of training "
            "clock, time paused for other jobs included), selected on the validation split (best epoch "
            f"{e['best_epoch']}, validation top-1 {e['best_val_top1']:.2f}%) and published in its deploy form "
            f"(`{e['file']}`, {e['params'] / 1e6:.2f} M parameters, {e['dtype']}, all-MLP: "
            f"{'yes' if e['all_mlp'] else 'no'}).",
            "",
            f"Fashion-MNIST test top-1 of the published file: **{e['test_top1']:.2f}%** (top-5 {e['test_top5']:.2f}%)"
            f"; {verdict}. Reproduce with `{e['command']}`.",
        ]
        curves = folder / "curves.png"
        if curves.is_file():
            lines += ["", f"![training curves]({Path(os.path.relpath(curves, docs)).as_posix()})"]
    else:
        lines += [
            f"`{s['model']}` selected on the validation split (best epoch {s['best_epoch']}, validation top-1 "
            f"{s['best_val_top1']:.2f}%): **{s['test_top1_best']:.2f}%** test top-1 after {s['epochs_done']} epochs "
            f"({s['train_seconds'] / 3600:.1f} h). Files: `{folder}` (not published yet).",
        ]
    return [*lines, ""]
