"""What a run writes about itself as it trains: metrics.json / metrics.csv (one row per epoch) and curves.png."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ..io import atomic_path, save_figure, write_text
from ..plotting import pyplot

__all__ = ["plot_curves", "write_metrics"]


def write_metrics(out: Path, history: list[dict], plots: bool = True) -> None:
    """Rewrites the run's metric files from ``history`` (each atomically)."""
    write_text(out / "metrics.json", json.dumps(history, indent=2) + "\n")
    keys = list(dict.fromkeys(k for row in history for k in row))  # validation may skip epochs: every column
    with atomic_path(out / "metrics.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
    if plots:
        plot_curves(history, out / "curves.png")


def plot_curves(history: list[dict], path: Path) -> None:
    """Loss and accuracy (top-1, or pixel accuracy when segmenting) per epoch, training and validation."""
    if not history:
        return
    plt = pyplot()
    ep = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    second = ("top1", "top-1 (%)") if "train_top1" in history[0] else ("pixel_acc", "pixel accuracy (%)")
    for ax, metric, label in zip(axes, ("loss", second[0]), ("loss", second[1]), strict=True):
        ax.plot(ep, [h[f"train_{metric}"] for h in history], label="train")
        val = [(h["epoch"], h[f"val_{metric}"]) for h in history if f"val_{metric}" in h]  # may skip epochs
        if val:
            ax.plot(*zip(*val, strict=True), marker="o", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
