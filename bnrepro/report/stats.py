"""95% intervals for the report's rules: thin wrappers over scipy.stats.

Every function returns an `Interval` (mean, 95% CI, n and the test's name) that formats itself. Paired tests
pair values by seed (same seed = same data order and init across arms); unpaired ones use Welch's t. Ratios
(speed-ups, drift ratios) get their interval on the log scale, so a ratio and its inverse are treated alike."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95  # every interval in the report; TOST at alpha = 1 - LEVEL (a 90% interval inside the margin)
ALPHA = 1 - LEVEL


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95% interval: a mean (difference), a ratio or a single arm's mean."""

    test: str  # e.g. "paired t", "Welch t", "t (one sample)", "paired t on log ratios"
    mean: float
    lo: float
    hi: float
    n: int  # pairs for paired tests, the smaller arm for Welch, values for one sample
    kind: str = "points"  # points (x100, "points"), ratio ("x"), acc (x100, "%"), plain
    p_tost: float | None = None  # TOST p-value, where an equivalence margin was tested

    def covers(self, x: float) -> bool:
        return self.lo <= x <= self.hi

    def fmt(self) -> str:
        if self.kind == "ratio":
            body = f"{self.mean:.2f}x [{self.lo:.2f}, {self.hi:.2f}]"
        elif self.kind == "points":
            body = f"{100 * self.mean:+.1f} points [{100 * self.lo:+.1f}, {100 * self.hi:+.1f}]"
        elif self.kind == "acc":
            body = f"{100 * self.mean:.1f}% [{100 * self.lo:.1f}, {100 * self.hi:.1f}]"
        else:
            body = f"{self.mean:.3g} [{self.lo:.3g}, {self.hi:.3g}]"
        how = "paired" if self.test.startswith("paired") else "Welch" if self.test.startswith("Welch") else ""
        return f"{body}, n={self.n}{' ' + how if how else ''}"

    def to_json(self) -> dict:
        return {"test": self.test, "mean": self.mean, "lo": self.lo, "hi": self.hi, "n": self.n, "kind": self.kind,
                "p_tost": self.p_tost, "text": self.fmt()}


def _clean(values) -> np.ndarray:
    return np.asarray([float(v) for v in values], float)


def _degenerate(test: str, mean: float, n: int, sd: float, kind: str) -> Interval | None:
    """n < 2: no interval at all (infinitely wide); zero spread: the interval is the point itself (scipy would
    return NaN, but identical values leave no doubt about the mean)."""
    if n < 2:
        return Interval(test, mean, -math.inf, math.inf, n, kind)
    if sd == 0:
        return Interval(test, mean, mean, mean, n, kind)
    return None


def mean_ci(values, kind: str = "acc", test: str = "t (one sample)") -> Interval:
    """The mean of values and its Student-t 95% interval."""
    x = _clean(values)
    mean = float(x.mean()) if len(x) else math.nan
    degenerate = _degenerate(test, mean, len(x), float(x.std(ddof=1)) if len(x) > 1 else 0.0, kind)
    if degenerate:
        return degenerate
    from scipy import stats  # here, not at the top: the door imports this module (via the claims) in every job

    lo, hi = stats.ttest_1samp(x, 0.0).confidence_interval(LEVEL)
    return Interval(test, mean, float(lo), float(hi), len(x), kind)


def paired(a: dict, b: dict, kind: str = "points") -> Interval:
    """mean(a - b) over the seeds both arms have, with the paired-t 95% interval. a, b: {seed: value}."""
    seeds = sorted(set(a) & set(b), key=str)
    d = _clean(a[s] - b[s] for s in seeds)
    mean = float(d.mean()) if len(d) else math.nan
    degenerate = _degenerate("paired t", mean, len(d), float(d.std(ddof=1)) if len(d) > 1 else 0.0, kind)
    if degenerate:
        return degenerate
    from scipy import stats

    lo, hi = stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds]).confidence_interval(LEVEL)
    return Interval("paired t", mean, float(lo), float(hi), len(d), kind)


def welch(a, b, kind: str = "points") -> Interval:
    """mean(a) - mean(b) for unpaired values, with Welch's t 95% interval."""
    x, y = _clean(a), _clean(b)
    mean = float(x.mean() - y.mean()) if len(x) and len(y) else math.nan
    n = min(len(x), len(y))
    if n < 2:
        return Interval("Welch t", mean, -math.inf, math.inf, n, kind)
    if x.std(ddof=1) == 0 and y.std(ddof=1) == 0:
        return Interval("Welch t", mean, mean, mean, n, kind)
    from scipy import stats

    lo, hi = stats.ttest_ind(x, y, equal_var=False).confidence_interval(LEVEL)
    return Interval("Welch t", mean, float(lo), float(hi), n, kind)


def difference(a: dict, b: dict, kind: str = "points") -> Interval:
    """a - b: paired by seed when the two arms ran the same seeds (at least two), else Welch."""
    if set(a) == set(b) and len(a) >= 2:
        return paired(a, b, kind)
    return welch(list(a.values()), list(b.values()), kind)


def ratio(a: dict, b: dict) -> Interval:
    """Geometric-mean ratio a / b with its 95% interval, from a t interval on log(a) - log(b): paired by seed
    where the arms share their seeds, else Welch. Values must be positive."""
    la = {s: math.log(v) for s, v in a.items()}
    lb = {s: math.log(v) for s, v in b.items()}
    d = difference(la, lb, "plain")
    return Interval(f"{d.test} on log ratios", math.exp(d.mean), math.exp(d.lo), math.exp(d.hi), d.n, "ratio")


def tost(a: dict, b: dict, margin: float, kind: str = "points") -> Interval:
    """Equivalence of a and b within +-margin (two one-sided t tests at alpha = 0.05): the returned interval is
    the usual 95% interval of the difference; p_tost < 0.05 means equivalence is shown."""
    d = difference(a, b, kind)
    if not math.isfinite(d.lo) or d.lo == d.hi:
        p = 0.0 if (math.isfinite(d.lo) and abs(d.mean) < margin) else 1.0
        return Interval(d.test, d.mean, d.lo, d.hi, d.n, kind, p)
    from scipy import stats

    x, y = _clean(a.values()), _clean(b.values())
    if d.test == "paired t":
        seeds = sorted(set(a) & set(b), key=str)
        diff = _clean(a[s] - b[s] for s in seeds)
        p_low = stats.ttest_1samp(diff, -margin, alternative="greater").pvalue
        p_high = stats.ttest_1samp(diff, margin, alternative="less").pvalue
    else:
        p_low = stats.ttest_ind(x + margin, y, equal_var=False, alternative="greater").pvalue
        p_high = stats.ttest_ind(x - margin, y, equal_var=False, alternative="less").pvalue
    return Interval(d.test, d.mean, d.lo, d.hi, d.n, kind, float(max(p_low, p_high)))
