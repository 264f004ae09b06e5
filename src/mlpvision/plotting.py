"""The one matplotlib set-up: a headless backend, imported only when a figure is drawn (matplotlib is slow to
import and not needed by inference)."""

from __future__ import annotations

from types import ModuleType

__all__ = ["epoch_axis", "pyplot"]


def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the file-only Agg backend (no display is ever needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def epoch_axis(ax, epochs: list[int] | list[float]) -> None:
    """An x axis of whole epochs: integer ticks only, and room around a single epoch (one point, not an empty
    axis spanning 0.96-1.04)."""
    import math

    from matplotlib.ticker import FixedLocator, MaxNLocator

    lo, hi = min(epochs), max(epochs)
    whole = range(math.ceil(lo), math.floor(hi) + 1)
    ax.xaxis.set_major_locator(FixedLocator(list(whole)) if len(whole) <= 12 else MaxNLocator(integer=True))
    pad = max(0.5, 0.03 * (hi - lo))
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_xlabel("epoch")
