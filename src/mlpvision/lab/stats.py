"""The lab's statistics: paired differences with 95% intervals, and the verdict rule of each kind of claim.

Two models are compared on the same seeds: seed s fixes the training subset, its order and augmentation for both,
so the difference d_s = a_s - b_s removes what the seed does to both. The interval is Student's t on the mean of the
d_s (n - 1 degrees of freedom): it covers seed-to-seed variation, training noise and test-set sampling alike. With a
single seed (the published models) it is a paired bootstrap over the test images instead, which covers test-set
sampling only; the section says which.
"""

from __future__ import annotations

import base64
import math
import random
import statistics
from dataclasses import dataclass

__all__ = ["Interval", "decide", "pack_bits", "paired_bootstrap", "paired_t", "t975", "unpack_bits"]

# Student's t, 97.5% quantile, by degrees of freedom (two-sided 95%)
_T975 = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    7: 2.365,
    8: 2.306,
    9: 2.262,
    10: 2.228,
    12: 2.179,
    15: 2.131,
    20: 2.086,
    30: 2.042,
}


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (the next tabulated df below, else 1.96)."""
    if df < 1:
        return math.inf
    return _T975[max(k for k in _T975 if k <= df)] if df <= 30 else 1.96


@dataclass(frozen=True)
class Interval:
    """A mean difference (points of top-1) and its 95% interval."""

    mean: float
    low: float
    high: float
    n: int  # seeds (or bootstrap resamples' source: test images)
    method: str

    def __str__(self) -> str:
        return f"{self.mean:+.2f} [{self.low:+.2f}, {self.high:+.2f}]"


def paired_t(a: list[float], b: list[float]) -> Interval | None:
    """Mean of the paired differences a_i - b_i with its t interval; None with fewer than two pairs."""
    d = [x - y for x, y in zip(a, b, strict=True)]
    if len(d) < 2:
        return None
    m, sd = statistics.mean(d), statistics.stdev(d)
    half = t975(len(d) - 1) * sd / math.sqrt(len(d))
    return Interval(m, m - half, m + half, len(d), f"paired t over {len(d)} seeds")


def pack_bits(correct: list[bool]) -> str:
    """Per-image correctness as base64 of a bit string (1 250 bytes for 10 000 test images)."""
    data = bytearray((len(correct) + 7) // 8)
    for i, c in enumerate(correct):
        if c:
            data[i // 8] |= 1 << (i % 8)
    return base64.b64encode(bytes(data)).decode()


def unpack_bits(text: str, n: int) -> list[bool]:
    data = base64.b64decode(text)
    return [bool(data[i // 8] >> (i % 8) & 1) for i in range(n)]


def paired_bootstrap(a: list[bool], b: list[bool], resamples: int = 2000, seed: int = 0) -> Interval:
    """Difference in accuracy (points) of two models on the same test images, with a paired bootstrap interval
    (percentile method) over the images."""
    n = len(a)
    rng = random.Random(seed)
    diff = [int(x) - int(y) for x, y in zip(a, b, strict=True)]
    means = sorted(100.0 * sum(diff[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    m = 100.0 * sum(diff) / n
    return Interval(
        m, means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1], n, f"paired bootstrap over {n} test images"
    )


def decide(interval: Interval | None, kind: str, margin: float = 0.0) -> str:
    """The verdict on "a beats b" (``greater``), "a is at most ``margin`` points below b" (``noninferior``), or
    "a and b are within ``margin`` points" (``equivalent``), from the interval of a - b:
    ``supported`` when the whole interval agrees, ``refuted`` when the whole interval disagrees, else ``undecided``.
    """
    if interval is None:
        return "pending"
    lo, hi = interval.low, interval.high
    if kind == "greater":
        return "supported" if lo > 0 else "refuted" if hi < 0 else "undecided"
    if kind == "noninferior":
        return "supported" if lo > -margin else "refuted" if hi < -margin else "undecided"
    if kind == "equivalent":
        inside, outside = -margin < lo and hi < margin, hi < -margin or lo > margin
        return "supported" if inside else "refuted" if outside else "undecided"
    raise ValueError(f"unknown kind of claim {kind!r}")
