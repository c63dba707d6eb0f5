"""95% intervals for the report's rules: thin wrappers over scipy.stats.

Every function returns an `Interval` (mean, 95% CI, n and the test's name) that formats itself. Paired tests
pair values by seed (same seed = same data order and init across arms); unpaired ones use Welch's t. Ratios
(speed-ups, drift ratios) get their interval on the log scale, so a ratio and its inverse are treated alike."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


class _Scipy:
    """scipy.stats, imported on first use: the door imports this module (through the claims' Params) in every
    job, and ~1 s of scipy there buys nothing (bnrepro/door.py)."""

    def __getattr__(self, name):
        from scipy import stats as scipy_stats

        return getattr(scipy_stats, name)


stats = _Scipy()

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
    se: float | None = None  # the t interval's standard error (of log values for a ratio): power, TOST bounds
    df: float | None = None  # and its degrees of freedom; None where there is no t interval (a point, n < 2)

    def _scale(self, x: float) -> float:
        if self.kind != "ratio":
            return x
        return math.log(x) if x > 0 else -math.inf  # a speed-up of 0 (never reached): minus infinity

    def center(self) -> float:
        """The mean on the scale the interval is symmetric on (log for a ratio)."""
        return self._scale(self.mean)

    def bounds(self, level: float) -> tuple[float, float]:
        """The two-sided `level` interval on the symmetric scale (log for a ratio); the point where no se."""
        c = self.center()
        if self.se is None or self.df is None:
            return self._scale(self.lo), self._scale(self.hi)
        h = float(stats.t.ppf(0.5 + level / 2, self.df)) * self.se
        return c - h, c + h

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
                "p_tost": self.p_tost, "se": self.se, "df": self.df, "text": self.fmt()}

    @classmethod
    def from_json(cls, j: dict) -> "Interval":
        return cls(j["test"], j["mean"], j["lo"], j["hi"], j["n"], j["kind"], j.get("p_tost"), j.get("se"),
                   j.get("df"))


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
    res = stats.ttest_1samp(x, 0.0)
    lo, hi = res.confidence_interval(LEVEL)
    return Interval(test, mean, float(lo), float(hi), len(x), kind, se=_se(mean, hi, res.df), df=float(res.df))


def paired(a: dict, b: dict, kind: str = "points") -> Interval:
    """mean(a - b) over the seeds both arms have, with the paired-t 95% interval. a, b: {seed: value}."""
    seeds = sorted(set(a) & set(b), key=str)
    d = _clean(a[s] - b[s] for s in seeds)
    mean = float(d.mean()) if len(d) else math.nan
    degenerate = _degenerate("paired t", mean, len(d), float(d.std(ddof=1)) if len(d) > 1 else 0.0, kind)
    if degenerate:
        return degenerate
    res = stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds])
    lo, hi = res.confidence_interval(LEVEL)
    return Interval("paired t", mean, float(lo), float(hi), len(d), kind, se=_se(mean, hi, res.df),
                    df=float(res.df))


def welch(a, b, kind: str = "points") -> Interval:
    """mean(a) - mean(b) for unpaired values, with Welch's t 95% interval."""
    x, y = _clean(a), _clean(b)
    mean = float(x.mean() - y.mean()) if len(x) and len(y) else math.nan
    n = min(len(x), len(y))
    if n < 2:
        return Interval("Welch t", mean, -math.inf, math.inf, n, kind)
    if x.std(ddof=1) == 0 and y.std(ddof=1) == 0:
        return Interval("Welch t", mean, mean, mean, n, kind)
    res = stats.ttest_ind(x, y, equal_var=False)
    lo, hi = res.confidence_interval(LEVEL)
    return Interval("Welch t", mean, float(lo), float(hi), n, kind, se=_se(mean, hi, res.df), df=float(res.df))


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
    return Interval(f"{d.test} on log ratios", math.exp(d.mean), math.exp(d.lo), math.exp(d.hi), d.n, "ratio",
                    se=d.se, df=d.df)


def tost(a: dict, b: dict, margin: float, kind: str = "points") -> Interval:
    """Equivalence of a and b within +-margin (two one-sided t tests at alpha = 0.05): the returned interval is
    the usual 95% interval of the difference; p_tost < 0.05 means equivalence is shown."""
    d = difference(a, b, kind)
    if not math.isfinite(d.lo) or d.lo == d.hi:
        p = 0.0 if (math.isfinite(d.lo) and abs(d.mean) < margin) else 1.0
        return Interval(d.test, d.mean, d.lo, d.hi, d.n, kind, p, d.se, d.df)
    x, y = _clean(a.values()), _clean(b.values())
    if d.test == "paired t":
        seeds = sorted(set(a) & set(b), key=str)
        diff = _clean(a[s] - b[s] for s in seeds)
        p_low = stats.ttest_1samp(diff, -margin, alternative="greater").pvalue
        p_high = stats.ttest_1samp(diff, margin, alternative="less").pvalue
    else:
        p_low = stats.ttest_ind(x + margin, y, equal_var=False, alternative="greater").pvalue
        p_high = stats.ttest_ind(x - margin, y, equal_var=False, alternative="less").pvalue
    return Interval(d.test, d.mean, d.lo, d.hi, d.n, kind, float(max(p_low, p_high)), d.se, d.df)


def _se(mean: float, hi: float, df: float) -> float:
    """The standard error behind a two-sided LEVEL t interval (mean, hi)."""
    return float((hi - mean) / stats.t.ppf(0.5 + LEVEL / 2, df))


POWER = 0.8  # the power every design is sized for (and every "seeds it would need" is computed at)
MAX_SEEDS = 10_000  # beyond this, "no affordable n": the design, not the seed count, must change


def seeds_needed(sd: float, distance: float, one_sided_alpha: float = ALPHA / 2, power: float = POWER,
                 paired: bool = True) -> int | None:
    """The fewest seeds (pairs) n >= 2 whose t interval excludes a boundary `distance` away from the true effect
    with probability `power`: (t_{1-a, n-1} + t_{power, n-1}) sd / sqrt(n) <= distance (the usual normal
    approximation to the noncentral t, with t quantiles). Welch (paired=False): n per arm, sd of each arm, so the
    difference's sd is sqrt(2) sd. None when no n up to MAX_SEEDS does (distance 0, or tiny against sd)."""
    if not (sd > 0) or not (distance > 0):
        return None if not (distance > 0) else 2
    sd = sd if paired else math.sqrt(2) * sd
    if (stats.norm.ppf(1 - one_sided_alpha) + stats.norm.ppf(power)) * sd / math.sqrt(MAX_SEEDS) > distance:
        return None
    lo, hi = 2, MAX_SEEDS
    while lo < hi:  # the left side falls with n: bisect for the first n that meets the bound
        n = (lo + hi) // 2
        if (stats.t.ppf(1 - one_sided_alpha, n - 1) + stats.t.ppf(power, n - 1)) * sd / math.sqrt(n) <= distance:
            hi = n
        else:
            lo = n + 1
    return lo
