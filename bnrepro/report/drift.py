"""Drift over every unit of the probed layer (C4, fig1, C9): the number the drift claims judge.

The probe (bnrepro/probes/percentiles.py) writes at each evaluation, beside the drawn unit's `probe_p15/50/85`,
one list per percentile with a value per unit of the layer (`probe_units_p15/50/85`). Per unit the drift is
`judging.drift`'s (the range of each percentile over the evaluations after the first 10% of training, averaged
over the three, over the mean spread p85 - p15); the run's number is the geometric mean over units.

Why all units: one unit's drift ratio BN / no BN varied from 0.19 to 1.62 across five seeds (the review of
C4), so no affordable number of seeds decides a ratio of single units. The paper's Fig. 1(b, c) draws one typical
unit; the claim is about the layer, so we draw one for the figure and test all.

Why the geometric mean over units (the mean of log drift), not the median or the plain mean: the pilot (seeds
1000-1004, c4_drift at cpu scale) showed that without BN the units' drifts are heavy-tailed: on MNIST-1D the
median unit's ratio BN / no BN was 0.90x while the upper quartile of no-BN units drifted 1.1 to 2.8 spreads, where
no BN unit passed 0.7. The median is blind to the half of the layer above it. The plain mean sees it, but a unit's
drift divides by its spread, so one unit whose input barely varies (a saturated or dead one) can have an
unbounded drift that outweighs the other units. The geometric mean counts every unit, on the log scale on which
the arms' drifts are compared (a ratio), and one extreme unit of n moves it by its factor to the power 1/n only.
Units whose spread or drift is 0 have no log and are left out.
"""
from __future__ import annotations

import math

import numpy as np

from bnrepro.report.runs import Run

UNITS = "probe_units_p"  # the test-set probe's per-unit series (the probe's units_prefix("probe_p"))
QS = (15, 50, 85)
WARMUP = 0.1  # the first 10% of training is left out, as judging.drift does: the net's start moves everything


def unit_series(run: Run, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values[evaluations, units]) of a per-unit metrics field: rows whose list is whole and finite, of
    the length most rows have (a row of another length is not the same layer)."""
    rows = [(m["step"], m[key]) for m in run.metrics
            if m.get("step") is not None and isinstance(m.get(key), list) and m[key]
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in m[key])]
    if not rows:
        return np.zeros(0), np.zeros((0, 0))
    lengths = [len(v) for _, v in rows]
    width = max(set(lengths), key=lengths.count)
    rows = [(s, v) for s, v in rows if len(v) == width]
    return np.asarray([s for s, _ in rows], float), np.asarray([v for _, v in rows], float)


def unit_drifts(run: Run, prefix: str = UNITS) -> np.ndarray | None:
    """Each unit's drift (as judging.drift, per unit): an array over units; None when the series are too short.
    A unit whose spread is zero (constant input) has no drift (NaN)."""
    series = [unit_series(run, f"{prefix}{q}") for q in QS]
    if any(len(steps) < 3 for steps, _ in series) or len({v.shape[1] for _, v in series}) != 1:
        return None
    start = WARMUP * max(steps.max() for steps, _ in series)
    # the evaluations where all three percentiles are whole, so p85 - p15 pairs values of one evaluation
    common = set.intersection(*(set(steps[steps >= start]) for steps, _ in series))
    kept = [values[np.isin(steps, list(common))] for steps, values in series]
    if len(common) < 2:
        return None
    spread = np.mean(kept[2] - kept[0], axis=0)
    ranges = np.mean([values.max(0) - values.min(0) for values in kept], axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(spread > 0, ranges / np.where(spread > 0, spread, 1.0), np.nan)


def drift_units(run: Run, prefix: str = UNITS) -> float | None:
    """The run's drift over every unit of the layer: the geometric mean of the units' drifts (the module's
    docstring says why). None without per-unit series (runs from before the probe wrote them)."""
    d = unit_drifts(run, prefix)
    if d is None:
        return None
    d = d[np.isfinite(d) & (d > 0)]
    return float(np.exp(np.mean(np.log(d)))) if d.size else None
