"""What a run writes about itself as it trains: metrics.json / metrics.csv (one row per epoch) and curves.png."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ..io import atomic_path, save_figure, write_text
from ..plotting import epoch_axis, pyplot

__all__ = ["plot_curves", "write_metrics"]


def write_metrics(out: Path, history: list[dict], plots: bool = True, title: str | None = None) -> None:
    """Rewrites the run's metric files from ``history`` (each atomically); ``title`` heads curves.png."""
    write_text(out / "metrics.json", json.dumps(history, indent=2) + "\n")
    keys = list(
        dict.fromkeys(k for row in history for k in row)
    )  # validation may skip epochs; a resumed run's rows may add columns
    with atomic_path(out / "metrics.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
    if plots:
        plot_curves(history, out / "curves.png", title)


def plot_curves(history: list[dict], path: Path, title: str | None = None) -> None:
    """Loss and accuracy (top-1, or pixel accuracy when segmenting) per epoch (training and validation) and the
    learning rate, one marker per epoch."""
    if not history:
        return
    plt = pyplot()
    ep = [h["epoch"] for h in history]
    size = 6 if len(ep) <= 30 else 3  # markers that still show each epoch on a long run
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), gridspec_kw={"width_ratios": [1, 1, 0.8]})
    second = ("top1", "top-1 (%)") if "train_top1" in history[0] else ("pixel_acc", "pixel accuracy (%)")
    for ax, metric, label in zip(axes, ("loss", second[0]), ("loss", second[1]), strict=False):
        ax.plot(ep, [h[f"train_{metric}"] for h in history], marker="o", ms=size, label="training (running average)")
        val = [(e, h[f"val_{metric}"]) for e, h in zip(ep, history, strict=True) if f"val_{metric}" in h]
        if val:
            ax.plot(*zip(*val, strict=True), marker="s", ms=size, label="validation")
        epoch_axis(ax, ep)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax = axes[2]
    ax.plot(ep, [h["lr"] for h in history], marker="o", ms=size, color="tab:green")
    epoch_axis(ax, ep)
    ax.set_ylabel("learning rate (at the epoch's end)")
    ax.set_yscale("log")  # warm-up and cosine decay span decades
    ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
