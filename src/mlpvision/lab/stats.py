"""The lab's statistics: paired differences with 95% intervals, p values against each rule's boundary, Holm's
family-wise correction, and the smallest effect a design can detect.

Two models are compared on the same seeds: seed s fixes the training subset, its order and augmentation for both,
so the difference d_s = a_s - b_s removes what the seed does to both. The interval is Student's t on the mean of the
d_s (n - 1 degrees of freedom): it covers seed-to-seed variation, training noise and test-set sampling alike. With a
single seed (the published models) it is a paired bootstrap over the test images instead, which covers test-set
sampling only; the section says which.

A verdict at level alpha is "supported" when the whole (1 - alpha) interval lies on the claimed side of the rule's
boundary and "refuted" when it lies wholly on the other side. The matching p value is the two-sided t test against
the boundary (for ``equivalent``, the larger of the two one-sided tests of TOST, doubled, for support; the test
against the nearer margin for refutation), so that p < alpha exactly when the interval decides; Holm's procedure
then adjusts the p values of a family, and a verdict holds after adjustment when its adjusted p is below alpha.
"""

from __future__ import annotations

import base64
import math
import statistics
from dataclasses import dataclass

import numpy as np
from scipy import stats as _st

__all__ = [
    "ALPHA",
    "VERDICT_WORDS",
    "Interval",
    "Test",
    "boundary_test",
    "decide",
    "detectable",
    "holm",
    "pack_bits",
    "paired_bootstrap",
    "paired_t",
    "signflip_test",
    "t975",
    "unpack_bits",
]

ALPHA = 0.05

VERDICT_WORDS = {
    "supported": "**supported**",
    "refuted": "**refuted**",
    "undecided": "undecided",
    "tied": "undecided (tied on every seed)",
    "pending": "pending (runs missing)",
    "undefined": "no verdict (its metric is undefined on too many seeds)",
}


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (two-sided 95%)."""
    return math.inf if df < 1 else float(_st.t.ppf(0.975, df))


@dataclass(frozen=True)
class Interval:
    """A mean difference (points of top-1) and its 95% interval."""

    mean: float
    low: float
    high: float
    n: int  # seeds (or bootstrap resamples' source: test images)
    method: str
    sd: float | None = None  # standard deviation of the paired differences (t intervals)

    def __str__(self) -> str:
        return f"{self.mean:+.2f} [{self.low:+.2f}, {self.high:+.2f}]"

    @property
    def se(self) -> float | None:
        return None if self.sd is None or self.n < 2 else self.sd / math.sqrt(self.n)


def paired_t(a: list[float], b: list[float]) -> Interval | None:
    """Mean of the paired differences a_i - b_i with its t interval; None with fewer than two pairs."""
    d = [x - y for x, y in zip(a, b, strict=True)]
    if len(d) < 2:
        return None
    m, sd = statistics.mean(d), statistics.stdev(d)
    half = t975(len(d) - 1) * sd / math.sqrt(len(d))
    return Interval(m, m - half, m + half, len(d), f"paired t over {len(d)} seeds", sd)


@dataclass(frozen=True)
class Test:
    """A comparison's test against its rule: the p value of the decision the data lean to, and that decision."""

    p: float  # two-sided p value against the rule's boundary (1.0 when nothing can be decided)
    leaning: str  # "supported" or "refuted": what a small p decides


def _p_two_sided(t: float, df: int) -> float:
    return float(2 * _st.t.sf(abs(t), df))


def boundary_test(interval: Interval | None, kind: str, margin: float = 0.0) -> Test | None:
    """The p value of ``interval``'s comparison against its rule's boundary (see the module docstring)."""
    if interval is None or interval.se is None:
        return None
    m, se, df = interval.mean, interval.se, interval.n - 1
    if se == 0:  # identical differences on every seed: decided by the sign alone, or not at all
        if kind == "equivalent":
            return Test(0.0, "supported") if abs(m) < margin else Test(0.0, "refuted")
        b = 0.0 if kind == "greater" else -margin
        return Test(1.0, "supported") if m == b else Test(0.0, "supported" if m > b else "refuted")
    if kind in ("greater", "noninferior"):
        b = 0.0 if kind == "greater" else -margin
        t = (m - b) / se
        return Test(_p_two_sided(t, df), "supported" if t > 0 else "refuted")
    if kind == "equivalent":
        if abs(m) < margin:  # TOST: both one-sided tests must reject
            t = min((m + margin) / se, (margin - m) / se)
            return Test(min(1.0, 2 * float(_st.t.sf(t, df))), "supported")
        return Test(_p_two_sided((abs(m) - margin) / se, df), "refuted")
    raise ValueError(f"unknown kind of claim {kind!r}")


def signflip_test(diffs: list[float]) -> Test | None:
    """The exact paired sign-flip (permutation) test of "the mean difference is 0", two-sided: the share of the
    2^n sign assignments whose mean is at least as far from 0 as the observed one. Valid whatever the shape of the
    differences (e.g. all-or-nothing outcomes per seed); with n seeds its smallest p is 2 / 2^n."""
    n = len(diffs)
    if n < 2 or n > 20:
        return None
    observed = abs(sum(diffs))
    hits = 0
    for mask in range(1 << n):
        total = sum(-d if mask >> i & 1 else d for i, d in enumerate(diffs))
        hits += abs(total) >= observed - 1e-9
    p = hits / (1 << n)
    return Test(p, "supported" if sum(diffs) > 0 else "refuted")


def decide(interval: Interval | None, kind: str, margin: float = 0.0) -> str:
    """The verdict on "a beats b" (``greater``), "a is at most ``margin`` points below b" (``noninferior``), or
    "a and b are within ``margin`` points" (``equivalent``), from the 95% interval of a - b:
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


def holm(ps: list[float]) -> list[float]:
    """Holm's step-down adjusted p values (in the order given): the k-th smallest p times (m - k + 1), made
    monotone and capped at 1."""
    m = len(ps)
    order = sorted(range(m), key=lambda i: ps[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        adjusted[i] = running
    return adjusted


def detectable(interval: Interval | None, power: float = 0.8, alpha: float = ALPHA) -> float | None:
    """The smallest true difference this design detects with ``power`` at two-sided ``alpha``, given the spread of
    its paired differences: (t_{1-alpha/2} + t_{power}) * sd / sqrt(n), n - 1 degrees of freedom. None without a
    spread (fewer than two seeds, or the same difference on every seed: the spread says nothing about power)."""
    if interval is None or not interval.se:
        return None
    df = interval.n - 1
    return float((_st.t.ppf(1 - alpha / 2, df) + _st.t.ppf(power, df)) * interval.se)


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
    (percentile method, ``scipy.stats.bootstrap`` of the per-image differences) over the images."""
    n = len(a)
    if len(b) != n:
        raise ValueError(f"paired samples of {n} and {len(b)} images")
    diff = 100.0 * (np.asarray(a, dtype=np.int8) - np.asarray(b, dtype=np.int8))
    boot = _st.bootstrap(
        (diff,), np.mean, n_resamples=resamples, batch=100, method="percentile", rng=np.random.default_rng(seed)
    )
    low, high = boot.confidence_interval
    return Interval(float(diff.mean()), float(low), float(high), n, f"paired bootstrap over {n} test images")
