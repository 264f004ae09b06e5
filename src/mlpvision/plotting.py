"""The one matplotlib set-up: a headless backend, imported only when a figure is drawn (matplotlib is slow to
import and not needed by inference)."""

from __future__ import annotations

from types import ModuleType

__all__ = ["epoch_axis", "log_axis", "pyplot"]


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


def log_axis(ax, axis: str, values: list[float] | None = None) -> None:
    """A legible logarithmic axis: major ticks at ``values`` (e.g. the measured sizes) or at the decades, labelled
    as plain numbers, and no labels on the minor ticks (matplotlib's ``2x10^1`` labels collide)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    target = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    if values:
        target.set_major_locator(FixedLocator(sorted(set(values))))
        target.set_minor_locator(LogLocator(base=10, subs="auto"))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 0.01, 1, 784
    target.set_minor_formatter(NullFormatter())
