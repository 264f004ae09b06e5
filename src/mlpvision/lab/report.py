"""docs/results.md and docs/figures/lab_*.png (results-cifar10.md, lab-cifar10_*.png for CIFAR-10, ...),
generated from the lab's JSON results alone.

Each experiment gets its claim, its budget (data, epochs or minutes, seeds, hardware), a table with mean ±
std over seeds, and a verdict computed from the numbers by a stated rule. Runs not done yet show as missing.
"""

from __future__ import annotations

import json
import os
import statistics
from collections import Counter, defaultdict
from pathlib import Path

from ..io import write_text
from ..plotting import pyplot
from . import measures as m
from .plan import plan
from .publish import TEACHER_ROLE
from .spec import EVAL_KEYS, LAB_DATA, SHIFTS, Settings, data_suffix

__all__ = ["write_report"]


def _ms(values: list[float]) -> str:
    """'mean ± std' of per-seed values ('mean' alone for one seed, '-' for none)."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


class _Results:
    def __init__(self, results: Path, data: str) -> None:
        self.data, self.info, self.suffix = data, LAB_DATA[data], data_suffix(data)
        self.data_name = self.info.title
        self.by_key: dict[str, dict] = {}
        for f in sorted((results / "runs").glob("*.json")):
            r = json.loads(f.read_text())
            self.by_key[r["key"]] = r
        self.results = results

    def rows(self, exp) -> dict[str, list[dict]]:
        """label -> the finished results of its seeds, in plan order.

        A result counts once it holds every measurement the run asks for: a training shared with another
        experiment may exist before this experiment has added its own measurements to it.
        """
        out: dict[str, list[dict]] = {}
        for run in exp.runs:
            out.setdefault(run.label, [])
            r = self.by_key.get(run.key)
            if r is not None and all(EVAL_KEYS[e] in r for e in run.evals):
                out[run.label].append(r)
        return out

    def latency(self, exp) -> dict:
        path = self.results / f"{exp.key}_latency.json"
        return json.loads(path.read_text()) if path.is_file() else {}


def _verdict(ok: bool | None, rule: str) -> str:
    if ok is None:
        return f"*Verdict: not all runs are done yet (rule: {rule}).*"
    return f"*Reproduced at this scale: **{'yes' if ok else 'no'}** (rule: {rule}).*"


def _cost_section(exp, res: _Results, rows: dict, figures: Path) -> list[str]:
    lat = res.latency(exp)
    lat_rows = lat.get("rows", {})
    lines = [
        "| model | test top-1 (%) | params deployed (M) | MMACs deployed | latency, deploy form (ms) |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, rs in rows.items():
        params = f"{rs[0]['deploy_params'] / 1e6:.3f}" if rs else "-"
        macs = f"{rs[0]['deploy_macs'] / 1e6:.1f}" if rs else "-"
        t = lat_rows.get(label)
        ms = f"{t['median_ms']:.1f} ({t['p25_ms']:.1f}-{t['p75_ms']:.1f})" if t else "-"
        lines.append(f"| {label} | {_ms(m.top1(rs))} | {params} | {macs} | {ms} |")
    if lat:
        lines += [
            "",
            f"Latency: batch {lat['batch_size']}, {lat['threads']} threads, eager fp32, all models of the "
            "table timed round-robin in one run (median, quartiles).",
        ]
    return lines


def _plot_families(exp, res: _Results, figures: Path) -> str | None:
    plt = pyplot()
    rows = res.rows(exp)
    if not any(rows.values()):
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, rs in rows.items():
        for r in rs:
            t, xs, ys = 0.0, [], []
            for h in r["history"]:
                t += h["epoch_seconds"] / 60
                if h.get("val_top1") is not None:
                    xs.append(t)
                    ys.append(h["val_top1"])
            ax.plot(xs, ys, "o-", label=label)
    ax.set(xlabel="training time (min)", ylabel="validation top-1 (%)", title="Accuracy vs wall-clock")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = figures / f"lab{res.suffix}_families.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def _plot_lines(
    xs_by_label: dict[str, tuple[list, list]], xlabel: str, ylabel: str, title: str, path: Path, logx: bool = False
) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, (xs, ys) in xs_by_label.items():
        ax.plot(xs, ys, "o-", label=label)
    if logx:
        ax.set_xscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def _machines(exp, res: _Results, rows: dict) -> str:
    """Where the section's runs were trained and in what precision, and where its latency was timed, as
    recorded by each result file."""
    counts = Counter(
        (r.get("machine", "a machine not recorded"), r.get("precision", "a precision not recorded"))
        for rs in rows.values()
        for r in rs
    )
    trained = "; ".join(f"{m}: {n} run{'s' if n > 1 else ''} in {p}" for (m, p), n in counts.items())
    timed = res.latency(exp).get("machine")
    if timed is None:
        where = ""
    elif {m for m, _ in counts} == {timed}:
        where = " Latency timed on the same machine."
    else:
        where = f" Latency timed on {timed}."
    return f"**Machine.** Trained on {trained or 'nothing yet'}.{where}"


def _header(exp, res: _Results, rows: dict) -> list[str]:
    seeds = sorted({r["seed"] for rs in rows.values() for r in rs})
    lines = [
        f"## {exp.title}",
        "",
        f"**Claim.** {exp.claim}",
        "",
        f"**Budget.** {exp.budget}; seeds: {', '.join(map(str, seeds)) or 'none yet'}.",
        "",
        _machines(exp, res, rows),
        "",
    ]
    return lines + ([exp.notes, ""] if exp.notes else [])


def _families_section(exp, res: _Results, rows: dict, figures: Path) -> list[str]:
    lines = [
        "| family | model | optimizer steps | training time (min) | test top-1 (%) | params (M) | MMACs |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for label, rs in rows.items():
        for r in rs:
            s = r["summary"]
            lines.append(
                f"| {label} | `{r['model']}` | {s['steps']} | {s['train_seconds'] / 60:.1f} "
                f"| {s['test_top1_final']:.2f} | {r['params'] / 1e6:.2f} | {r['macs'] / 1e6:.1f} |"
            )
    name = _plot_families(exp, res, figures)
    return lines + (["", f"![accuracy vs wall-clock](figures/{name})"] if name else [])


def _translation_section(exp, res: _Results, rows: dict, figures: Path) -> list[str]:
    lines = [
        "| family | " + " | ".join(f"shift {k}px" for k in SHIFTS) + " | drop at 4 px |",
        "|---|" + "---:|" * (len(SHIFTS) + 1),
    ]
    curves = {}
    for label, rs in rows.items():
        for r in rs:
            acc = [r["shift_top1"][str(k)] for k in SHIFTS]
            curves[label] = (list(SHIFTS), acc)
            lines.append(f"| {label} | " + " | ".join(f"{a:.1f}" for a in acc) + f" | {acc[0] - acc[-1]:.1f} |")
    if curves:
        name = _plot_lines(
            curves,
            "shift (pixels)",
            "test top-1 (%)",
            "Accuracy under translation",
            figures / f"lab{res.suffix}_translation.png",
        )
        lines += ["", f"![accuracy vs shift](figures/{name})"]
    return lines


def _resmlp_section(exp, res: _Results, rows: dict, figures: Path) -> list[str]:
    lines = ["| variant | test top-1 (%) | last-epoch train top-1 (%) |", "|---|---:|---:|"]
    for label, rs in rows.items():
        lines.append(f"| {label} | {_ms(m.top1(rs))} | {_ms([r['history'][-1]['train_top1'] for r in rs])} |")
    return lines


def _overfitting_section(exp, res: _Results, rows: dict, figures: Path) -> list[str]:
    lines = [
        "| model | training images | train top-1 (%) | test top-1 (%) | gap (points) |",
        "|---|---:|---:|---:|---:|",
    ]
    gaps: dict[str, dict[float, float]] = defaultdict(dict)
    for label, rs in rows.items():
        model, frac = label.split("|")
        gap = [m.gap(r) for r in rs]
        n = rs[0]["train_config"]["train_subset"] if rs else "-"
        lines.append(f"| {model} | {n} | {_ms([r['train_top1'] for r in rs])} | {_ms(m.top1(rs))} | {_ms(gap)} |")
        if gap:
            gaps[model][float(frac)] = statistics.mean(gap)
    if gaps:
        curves = {model: (sorted(g), [g[f] for f in sorted(g)]) for model, g in gaps.items()}
        name = _plot_lines(
            curves,
            "share of the training set",
            "train - test top-1 (points)",
            "Over-fitting vs data",
            figures / f"lab{res.suffix}_overfitting.png",
            logx=True,
        )
        lines += ["", f"![gap vs data](figures/{name})"]
    return lines


def _permutation_section(exp, res: _Results, rows: dict, figures: Path) -> list[str]:
    lines = [f"| model | {res.data_name} | permuted pixels | change (points) |", "|---|---:|---:|---:|"]
    for model in dict.fromkeys(label.split("|")[0] for label in rows):
        a, b = m.top1(rows[f"{model}|{res.data}"]), m.top1(rows[f"{model}|{res.data}-permuted"])
        d = [y - x for x, y in zip(a, b, strict=False)]
        lines.append(f"| {model} | {_ms(a)} | {_ms(b)} | {_ms(d)} |")
    return lines


def _probe_section(exp, res: _Results, rows: dict, figures: Path) -> list[str]:
    chance = exp.chance
    lines = [f"| model | test top-1 (%) (chance {chance:g}) |", "|---|---:|"]
    for label, rs in rows.items():
        lines.append(f"| {label} | {_ms(m.top1(rs))} |")
    return lines


def _resolution_section(exp, res: _Results, rows: dict, figures: Path) -> list[str]:
    lines = []
    err = res.results / "resolution_error.json"
    size = res.info.size
    if err.is_file():
        e = json.loads(err.read_text())
        lines += [
            f"A {size}-px Mixer given a {2 * size}-px image:",
            "",
            "```",
            f"InputShapeError: {e['error']}",
            "```",
            "",
        ]
    lines += ["| run | test top-1 (%) | training time (min) |", "|---|---:|---:|"]
    for label, rs in rows.items():
        for r in rs:
            s = r["summary"]
            lines.append(f"| {label} | {s['test_top1_final']:.2f} | {s['train_seconds'] / 60:.1f} |")
    return lines


_SECTIONS = {
    "repmlp_ablation": _cost_section,
    "repmlp_vs_convnet": _cost_section,
    "repmlp_resnet": _cost_section,
    "families": _families_section,
    "translation": _translation_section,
    "resmlp_norm": _resmlp_section,
    "resmlp_distill": _resmlp_section,
    "overfitting": _overfitting_section,
    "permutation": _permutation_section,
    "position": _probe_section,
    "global": _probe_section,
    "resolution": _resolution_section,
}


def _section(exp, res: _Results, figures: Path) -> list[str]:
    rows = res.rows(exp)
    done = sum(map(len, rows.values())) == len(exp.runs)  # every seed of every row, not one seed per row
    body = _SECTIONS[exp.key](exp, res, rows, figures)
    if exp.verdict is not None:
        ok = exp.verdict(rows) if done else None
        body = [*body, "", _verdict(ok, exp.rule)] + (["", exp.caveat] if exp.caveat and ok is False else [])
    return [*_header(exp, res, rows), *body, ""]


def write_report(
    results: str | Path = "results/lab", docs: str | Path = "docs", headline: Path | list[Path] | None = None
) -> Path:
    """Regenerates ``docs/results.md`` (``results-<data>.md`` off Fashion-MNIST) and the lab figures from the
    JSON files under ``results``, with the headline model's published (or run) folder(s) first; returns the page's
    path."""
    results, docs = Path(results), Path(docs)
    figures = docs / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    meta_path = results / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    settings = Settings(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta.get("settings", {}).items()})
    res = _Results(results, settings.data)
    flag = "" if not res.suffix else f" --data {settings.data}"
    lines = [
        f"# The inductive-bias lab: results on {res.data_name}",
        "",
        f"Generated by `mlpvision lab{flag}` from the JSON files under `{results.as_posix()}/` (rerun "
        f"`mlpvision lab{flag} --report-only` to rebuild this page). Data: {res.data_name} "
        f"({res.info.size}x{res.info.size}x{res.info.chans}); "
        f"{settings.val_size} training images held out for validation, figures on the test set"
        f"{f' (first {settings.test_subset} images)' if settings.test_subset else ''}, unless a section says "
        "otherwise; the recipe is the library's default (AdamW, warm-up + cosine, label smoothing 0.1). Each section "
        "states the machine and numeric precision its runs recorded; the last `mlpvision lab` ran on "
        f"{meta.get('machine', 'an unrecorded machine')}. "
        f"Mode: {'quick (tiny budgets)' if settings.quick else 'full'}.",
        "",
    ]
    folders = [
        f for f in ([headline] if isinstance(headline, Path) else headline or []) if (f / "summary.json").is_file()
    ]
    if folders:
        published = {f: json.loads((f / "eval.json").read_text()) for f in folders if (f / "eval.json").is_file()}
        lines += ["## The headline all-MLP model", "", *_attempts_table(published)]
        for folder in folders:
            role = " (distillation teacher)" if published.get(folder, {}).get("role") == TEACHER_ROLE else ""
            head = [f"### `{folder.as_posix()}`{role}", ""] if len(folders) > 1 else []
            lines += head + _headline(folder, published.get(folder), docs)
    for exp in plan(settings):
        lines += _section(exp, res, figures)
    lines += [
        "## Cost scaling",
        "",
        "Mixer's cost grows linearly with the number of patches, ViT's attention "
        "quadratically: see [scaling.md](scaling.md).",
        "",
    ]
    out = docs / f"results{res.suffix}.md"
    write_text(out, "\n".join(lines))
    return out


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
    """The section of a headline model or of a teacher, from its published folder (summary.json and its eval.json
    ``e``) or a run folder (``e`` None)."""
    s = json.loads((folder / "summary.json").read_text())
    lines = []
    if e is not None:  # published: its eval.json
        teacher = e.get("role") == TEACHER_ROLE
        verdict = (
            "a distillation teacher of the headline recipes: it need not be all-MLP and has no target"
            if teacher
            else f"target {e['target_top1']:.1f}%: **{'met' if e['met'] else 'not met'}**"
        )
        lines += [
            f"`{s['model']}` trained by `python experiments/headline.py{' --teacher' if teacher else ''}` "
            f"(recipe: `{e['recipe']}`; "
            f"{s['epochs_done']} epochs, {s['train_seconds'] / 3600:.1f} h of training clock, time paused for other "
            "jobs included), selected on the validation split (best epoch "
            f"{e['best_epoch']}, validation top-1 {e['best_val_top1']:.2f}%) and published in its deploy form "
            f"(`{e['file']}`, {e['params'] / 1e6:.2f} M parameters, {e['dtype']}, all-MLP: "
            f"{'yes' if e['all_mlp'] else 'no'}).",
            "",
            f"Fashion-MNIST test top-1 of the published file: **{e['test_top1']:.2f}%** (top-5 {e['test_top5']:.2f}%)"
            f"; {verdict}. Reproduce with "
            f"`{e['command']}`.",
        ]
        curves = folder / "curves.png"
        if curves.is_file():
            lines += ["", f"![training curves]({Path(os.path.relpath(curves, docs)).as_posix()})"]
    else:  # a run folder that has not been published yet
        lines += [
            f"`{s['model']}` selected on the validation split (best epoch {s['best_epoch']}, validation top-1 "
            f"{s['best_val_top1']:.2f}%): **{s['test_top1_best']:.2f}%** test top-1 after {s['epochs_done']} epochs "
            f"({s['train_seconds'] / 3600:.1f} h). Files: `{folder}` (not published yet).",
        ]
    return [*lines, ""]
