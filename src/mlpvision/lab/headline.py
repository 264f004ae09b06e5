"""The all-MLP model against the CNN trained with the same optimizer and budget (accuracy with paired bootstrap
intervals, CPU latency eager and ONNX Runtime), and the published models' sections of the results page."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ..data import plain_split
from ..deploy import Candidate, OrtModel, export_onnx, inference_call, measure
from ..errors import DataError
from ..io import load_checkpoint, save_figure, write_json
from ..io.files import load_yaml
from ..plotting import pyplot
from ..reparam import non_mlp_layers
from ..runtime import machine_description
from .publish import TEACHER_ROLE
from .spec import read_mapping
from .stats import VERDICT_WORDS, Interval, decide, paired_bootstrap

__all__ = ["headline_section", "headline_vs_cnn", "published_sections", "redraw_headline_figure"]


RESAMPLES = 2000  # the paired bootstrap's resamples


def headline_vs_cnn(published: list[Path], results: Path, figures: Path, batch: int = 64, repeats: int = 30) -> Path:
    """The all-MLP models against the CNN trained with the same optimizer and budget: test top-1 with paired bootstrap
    intervals (per test image), and CPU latency of each deploy form at batch 1 and ``batch``, eager and ONNX Runtime,
    timed round-robin in one run. Writes ``results/headline_vs_cnn.json`` and the accuracy/latency figure."""
    test, _ = plain_split("fashion-mnist", "test")
    rows, correct, cands, recipes = [], {}, [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for folder in published:
            e = read_mapping(folder / "eval.json", "published eval file")
            recipes[folder.name] = load_yaml((folder / "recipe.yaml").read_bytes(), f"{folder}/recipe.yaml") or {}
            model = load_checkpoint(folder / "model.safetensors", device="cpu").float().eval()
            correct[folder.name] = hits = _correct(model, test)  # one pass: accuracy and the paired bootstrap
            onnx = OrtModel(export_onnx(model, Path(tmp) / f"{folder.name}.onnx").path)
            for b in (1, batch):
                x = torch.randn(b, model.in_chans, model.img_size, model.img_size)
                cands.append(Candidate(folder.name, f"{b}/eager", inference_call(model, x), None))
                cands.append(Candidate(folder.name, f"{b}/onnxruntime", lambda o=onnx, x=x: o(x), None))
            rows.append(
                {
                    "name": folder.name,
                    "file": f"{folder.as_posix()}/model.safetensors",
                    "all_mlp": not non_mlp_layers(model),
                    "teacher": e.get("role") == TEACHER_ROLE,
                    "params": sum(p.numel() for p in model.parameters()),
                    "top1": 100.0 * sum(hits) / len(hits),
                    "best_val_top1": e["best_val_top1"],
                    "recipe": e["recipe"],
                }
            )
        timing = measure(cands, repeats, warmup=3)
    for row in rows:
        mine = [(c, t) for c, t in zip(cands, timing, strict=True) if c.impl == row["name"]]
        row["latency_ms"] = {c.backend: t["median_s"] * 1e3 for c, t in mine}
    cnn = next(r for r in rows if not r["all_mlp"])
    mlps = [r for r in rows if r["all_mlp"]]
    same = next((r for r in mlps if r["name"] == "allmlp_headline"), mlps[0])
    best = max(mlps, key=lambda r: r["best_val_top1"])  # chosen on validation, never on test
    comparisons = []
    for label, r in (("all-MLP, same optimizer and budget", same), ("best all-MLP on validation", best)):
        iv = paired_bootstrap(correct[r["name"]], correct[cnn["name"]], resamples=RESAMPLES)
        name = f"{label} (`{r['name']}`) vs the CNN (`{cnn['name']}`)"
        comparisons.append({"name": name, "kind": "noninferior", "margin": 0.5, "interval": dataclasses.asdict(iv)})
    out = results / "headline_vs_cnn.json"
    n_test = len(correct[cnn["name"]])
    figure = _plot_accuracy_latency(rows, figures / "lab_headline_vs_cnn.png", n_test)
    c = recipes[cnn["name"]]
    summary = {
        "question": f"Does the best all-MLP deploy-form model match the CNN (`{cnn['name']}`) trained with the same "
        f"optimizer and budget ({c.get('epochs', '?')} epochs of the training split less its validation images, "
        f"{c.get('optimizer', '?')}), within half a point, and how fast is each on a CPU?",
        "models": "; ".join(_recipe_words(r["name"], r["all_mlp"], recipes[r["name"]]) for r in rows) + ".",
        "rows": rows,
        "comparisons": comparisons,
        "batch": batch,
        "figure": figure,
        "n_test": n_test,
        "method": f"paired bootstrap over the {n_test} test images ({RESAMPLES} resamples, percentile); one trained "
        "model each, so the interval covers test-set sampling, not seed-to-seed variation",
        "latency": f"median of {repeats} calls, float32, {torch.get_num_threads()} threads, all models and backends "
        "timed round-robin in one run",
        "machine": machine_description(),
    }
    write_json(out, summary)
    return out


def _recipe_words(name: str, all_mlp: bool, recipe: dict) -> str:
    """What a published model's recipe says of it, in words: the model and its config, epochs, random erasing,
    teachers."""
    args = ", ".join(f"{k} {v}" for k, v in (recipe.get("model_args") or {}).items())
    words = f"`{name}` ({'all-MLP' if all_mlp else 'not all-MLP'}): `{recipe.get('model', '?')}`"
    words += f" ({args})" if args else ""
    words += (
        f", {recipe.get('epochs', '?')} epochs, random erasing {(recipe.get('aug') or {}).get('random_erasing', 0)}"
    )
    teachers = recipe.get("teacher")
    if teachers:
        teachers = [teachers] if isinstance(teachers, str) else teachers
        named = ", ".join(f"`{Path(str(t)).parent.name}`" for t in teachers)
        words += f", {recipe.get('distill', 'soft')} distillation from {named}"
    return words


def _correct(model, data) -> list[bool]:
    out = []
    with torch.inference_mode():
        for images, labels in DataLoader(data, batch_size=500):
            out += (model(images).argmax(1) == labels).tolist()
    return out


def _plot_accuracy_latency(rows: list[dict], path: Path, n_test: int) -> str:
    """Test top-1 (with its 95% binomial interval over the test images) against batch-1 latency, one colour per
    model, a filled marker for ONNX Runtime and an open one for eager PyTorch, the two joined."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.4))
    for i, r in enumerate(rows):
        color = f"C{i}"
        p = r["top1"] / 100
        err = 196 * (p * (1 - p) / n_test) ** 0.5  # points
        xs = [r["latency_ms"]["1/eager"], r["latency_ms"]["1/onnxruntime"]]
        ax.plot(xs, [r["top1"]] * 2, color=color, alpha=0.4, lw=1)
        ax.errorbar(xs[1], r["top1"], yerr=err, fmt="o", color=color, capsize=3,
                    label=f"{r['name']} ({'all-MLP' if r['all_mlp'] else 'CNN'})")  # fmt: skip
        ax.errorbar(xs[0], r["top1"], yerr=err, fmt="o", mfc="white", color=color, capsize=3)
    ax.set_xscale("log")
    lo = min(min(r["latency_ms"]["1/eager"], r["latency_ms"]["1/onnxruntime"]) for r in rows)
    hi = max(max(r["latency_ms"]["1/eager"], r["latency_ms"]["1/onnxruntime"]) for r in rows)
    ticks = [t for t in (0.5, 1, 2, 5, 10, 20, 50, 100, 200) if lo / 1.5 <= t <= hi * 1.5]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set(
        xlabel="latency at batch 1, ms (filled: ONNX Runtime, open: eager PyTorch; log scale)",
        ylabel="Fashion-MNIST test top-1 (%)",
        title=f"Published models: accuracy (95% interval over the {n_test} test images) against CPU latency",
    )
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path.name


def redraw_headline_figure(results: Path, figures: Path) -> None:
    """Draws the accuracy/latency figure again from ``results/headline_vs_cnn.json`` (no timing)."""
    path = results / "headline_vs_cnn.json"
    if path.is_file():
        h = read_mapping(path, "headline comparison")
        n_test = h.get("n_test", h["comparisons"][0]["interval"]["n"] if h.get("comparisons") else 0)
        _plot_accuracy_latency(h["rows"], figures / h.get("figure", "lab_headline_vs_cnn.png"), n_test)


def headline_section(results: Path) -> list[str]:
    """The all-MLP model against the CNN of the same optimizer and budget: accuracy with intervals and CPU latency."""
    path = results / "headline_vs_cnn.json"
    if not path.is_file():
        return []
    h = read_mapping(path, "headline comparison")
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
    s = read_mapping(folder / "summary.json", "published summary")
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


def published_sections(headline: Path | list[Path] | None, docs: Path) -> list[str]:
    """The published models' table and one section per published folder (those with a summary.json)."""
    given = [headline] if isinstance(headline, Path) else headline or []
    folders = [f for f in given if (f / "summary.json").is_file()]
    if not folders:
        return []
    published = {
        f: read_mapping(f / "eval.json", "published eval file") for f in folders if (f / "eval.json").is_file()
    }
    try:
        lines = ["## Published models", "", *_attempts_table(published)]
        for folder in folders:
            role = " (distillation teacher)" if published.get(folder, {}).get("role") == TEACHER_ROLE else ""
            head = [f"### `{folder.as_posix()}`{role}", ""] if len(folders) > 1 else []
            lines += head + _headline(folder, published.get(folder), docs)
    except (KeyError, TypeError, ValueError, AttributeError) as e:  # a field missing or of another type
        names = ", ".join(f.as_posix() for f in folders)
        raise DataError(f"a published folder's eval.json or summary.json is damaged ({names}: {e!r})") from None
    return lines
