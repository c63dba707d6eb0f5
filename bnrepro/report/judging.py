"""The machinery every claim's verdict is built from (bnrepro/claims/: fig1, C1-C15, a module each): the thresholds
fixed before any run, `Claim` (the paper's numbers, a declarative Rule, a judge), `Judged` and `Result`, the run measures and arm helpers the judges share, and `evaluate`, which turns a claim and
its runs into a Result.

Runs are scored by summary `score` (mean test accuracy over the last k evaluations); selections (an arm's
learning rate, a dropout rate, the steps to a target) read the validation split only. A diverged run scores 0;
failed or interrupted runs are left out and counted."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from bnrepro.norm import REGISTRY as NORMS
from bnrepro.report import stats
from bnrepro.report.design import Design, cell, known, role
from bnrepro.report.rules import CORE, INCONCLUSIVE, NOT_RUN, PRECONDITION, Rule, combine
from bnrepro.report.runs import Run, Unpoolable, check_pooling, select, sort_key
from bnrepro.report.stats import Interval

# Thresholds, fixed before any result was seen. Accuracies are fractions; 0.01 = 1 point.
MIN_GAIN = 0.01  # smallest accuracy gain the rules call one: digits' test set has 360 images, 1 point = 3.6 of
# them, and it is twice the paper's smallest reported gain (Inception 72.2% -> BN-Baseline 72.7%)
SAME = 0.01  # "about the same" / "no loss" margin: below MIN_GAIN so "same" never admits a gain the rules count
FAR = 2.0  # "far fewer steps": the speed-up's interval must exclude 1 by a factor of 2 (the paper's 14x comes
# from a 31e6-step baseline; a cpu-scale baseline's budget caps the ratio, so 2x is the bar, reported beside 14x)
STABLE_FACTOR = 0.5  # "far more stable": at most half the drift
KEEP = 0.75  # C9: noisy BN keeps at least 3/4 of BN's gain over no BN ("trains about as well")
TRAINS = 0.10  # C10: no-BN "trains" at an LR if no seed diverged and its mean score is within 10 points of its best
BN_KINDS = ("bn", "ghost_bn")
# The source of a threshold at "no effect": the claim states a direction. Designs are sized (stats.seeds_needed)
# for the unit's smallest effect of interest, Test.effect(): MIN_GAIN for points, a factor of 2 for ratios.
DIRECTION = (f"the claim states a direction, so no effect (0) is the boundary; the design is sized for a "
             f"{100 * MIN_GAIN:g}-point effect (MIN_GAIN)")
DIRECTION_RATIO = ("the claim states a direction, so a ratio of 1 is the boundary; the design is sized for a factor "
                   "of 2")


class Missing(Exception):
    """The experiment ran, but not the arms the rule compares: the claim counts as not run."""


class Untestable(Exception):
    """The runs exist but cannot be judged honestly (e.g. no validation score to select on): inconclusive."""


@dataclass
class Judged:
    measured: dict[str, Interval | None]
    numbers: dict
    ours: str


@dataclass
class Result:
    id: str
    title: str
    experiment: str
    paper: str
    rule: str
    data: str = ""  # the dataset this verdict is on ("" for runs judged together, e.g. a test's synthetic runs)
    verdict: str = NOT_RUN
    deciding: str = ""
    ours: str = "no runs"
    reason: str = ""  # why a claim is not run or inconclusive for a reason outside its tests (e.g. pooling)
    numbers: dict = field(default_factory=dict)
    checks: list[dict] = field(default_factory=list)
    measured: dict = field(default_factory=dict)  # the judge's intervals by test key (the scorecard reads them)
    runs: list[Run] = field(default_factory=list)
    failed: int = 0  # runs of the experiment not completed or diverged: failed, interrupted, started, unreadable
    # (left out of every statistic)
    unreadable: int = 0  # of those, the run dirs with a damaged file (runs.load_run)

    @property
    def failed_text(self) -> str:
        """The failed-runs cell: "2", or "2 (1 unreadable)"."""
        return f"{self.failed}" + (f" ({self.unreadable} unreadable)" if self.unreadable else "")

    @property
    def decide(self) -> list[str]:
        """What would decide an inconclusive verdict: each unclear precondition or core test's answer."""
        return [f"[{c['key']}] {c['decide']}" for c in self.checks
                if c.get("decide") and c["role"] in (PRECONDITION, CORE)]

    @property
    def slug(self) -> str:
        """The claim and dataset as a file name: c2_digits (figures)."""
        return self.id.lower() + (f"_{self.data.replace('/', '-')}" if self.data else "")

    def to_json(self) -> dict:
        return {"title": self.title, "experiment": self.experiment, "data": self.data, "verdict": self.verdict,
                "deciding": self.deciding, "ours": self.ours, "reason": self.reason, "paper": self.paper,
                "rule": self.rule, "numbers": self.numbers, "checks": self.checks, "decide": self.decide,
                "failed": self.failed,
                "unreadable": self.unreadable, "runs": [str(run.dir) for run in self.runs]}


# --- run measures ------------------------------------------------------------------------------------------

def usable(run: Run) -> bool:
    return run.status in ("completed", "diverged")


def summary_value(key: str) -> Callable[[Run], float | None]:
    """summary[key]; 0 for a diverged run (its last loss was NaN/inf); None when absent."""
    def value(run: Run) -> float | None:
        if run.diverged:
            return 0.0
        v = run.summary.get(key)
        return None if v is None else float(v)
    return value


score, val_score = summary_value("score"), summary_value("val_score")


def train_test_gap(run: Run) -> float | None:
    train, test = run.summary.get("final_train_acc"), run.summary.get("final_acc")
    return None if run.diverged or train is None or test is None else float(train) - float(test)


def drift(run: Run, prefix: str = "probe_p") -> float | None:
    """Instability of the probe's distribution: the range (max - min) of its 15th, 50th and 85th percentiles
    over the evaluations after the first 10% of training, averaged over the three and divided by the mean
    spread p85 - p15 over the same evaluations (so it has no unit)."""
    series = [run.series(f"{prefix}{q}") for q in (15, 50, 85)]
    if any(len(steps) < 3 for steps, _ in series):
        return None
    start = 0.1 * max(steps.max() for steps, _ in series)
    kept = [values[steps >= start] for steps, values in series]
    n = min(len(values) for values in kept)
    if n < 2:
        return None
    kept = [values[:n] for values in kept]
    spread = float(np.mean(kept[2] - kept[0]))
    if not spread > 0:
        return None
    return float(np.mean([values.max() - values.min() for values in kept]) / spread)


def acc_series(run: Run) -> tuple[str, np.ndarray, np.ndarray]:
    """The series steps-to-target reads: validation accuracy, or test accuracy when there is no val split."""
    steps, values = run.series("val_acc")
    if len(steps):
        return "val", steps, values
    return ("test", *run.series("test_acc"))


def steps_to(run: Run, target: float) -> float | None:
    if run.diverged:
        return None
    _, steps, values = acc_series(run)
    hit = np.nonzero(values >= target)[0]
    return float(steps[hit[0]]) if len(hit) else None


def plateau_gain(run: Run) -> float | None:
    """Validation accuracy gained over the last quarter of the run's evaluations (mean over them minus the
    mean over the quarter before); 0 for a diverged run (it has settled, at 0); None with fewer than 4."""
    if run.diverged:
        return 0.0
    _, values = run.series("val_acc")
    q = len(values) // 4
    if q < 1:
        return None
    return float(np.mean(values[-q:]) - np.mean(values[-2 * q:-q]))


def by_seed(runs: list[Run], value: Callable[[Run], float | None]) -> dict:
    return {run.get("seed"): v for run in runs if (v := value(run)) is not None}


def arms_of(runs: list[Run], key: Callable[[Run], tuple] | tuple[str, ...]) -> dict[tuple, list[Run]]:
    fn = key if callable(key) else (lambda run: tuple(run.get(k) for k in key))
    arms: dict[tuple, list[Run]] = {}
    for run in runs:
        arms.setdefault(fn(run), []).append(run)
    return dict(sorted(arms.items(), key=lambda kv: sort_key(kv[0])))


def arm_json(values: dict, kind: str = "acc") -> dict:
    """An arm's mean, 95% interval, n and per-seed values: what tables and figures show."""
    return {**stats.mean_ci(list(values.values()), kind).to_json(), "values": {str(s): v for s, v in values.items()}}


def need(arms: dict, key, what: str) -> list[Run]:
    if key not in arms:
        raise Missing(f"no runs for {what}")
    return arms[key]


def pick_by_val(arms: dict[tuple, list[Run]], what: str, worst: bool = False):
    """The arm (e.g. learning rate) with the highest (or lowest) mean validation score; the only one if there is
    one. Selecting on test scores would bias the comparison toward noisy arms, so no val_score: untestable."""
    if len(arms) == 1:
        return next(iter(arms))
    means = {}
    for key, runs in arms.items():
        values = [v for run in runs if (v := val_score(run)) is not None]
        if len(values) < len(runs):
            raise Untestable(f"{what}: selecting among {len(arms)} settings needs val_score (data.val_split > 0)")
        means[key] = float(np.mean(values))
    return (min if worst else max)(means, key=means.get)


def combo(a: dict, b: dict, wa: float, wb: float) -> dict:
    """wa*a + wb*b per seed, over the seeds both have (a paired linear contrast)."""
    return {s: wa * a[s] + wb * b[s] for s in a if s in b}


def ratio_steps(base: dict, arm: dict) -> Interval | None:
    """Speed-up base/arm over seeds where both reached the target (steps None = not reached): an arm that
    reached it in no seed has speed-up 0; one that reached it in some seeds only is not measured."""
    reached = {s: v for s, v in arm.items() if v is not None}
    if not reached:
        return Interval("not reached", 0.0, 0.0, 0.0, len(arm), "ratio")
    if len(reached) < len(arm):
        return None
    base = {s: v for s, v in base.items() if v is not None}
    return stats.ratio(base, {s: max(v, 1.0) for s, v in reached.items()})


def mean_curves(runs: list[Run], key: str) -> dict:
    """{"steps", "mean", "lo", "hi"} of a metrics field over runs, a 95% interval per evaluated step."""
    by_step: dict[float, list[float]] = {}
    for run in runs:
        for step, value in zip(*run.series(key)):
            by_step.setdefault(float(step), []).append(float(value))
    steps = sorted(by_step)
    ivs = [stats.mean_ci(by_step[s]) for s in steps]
    finite = [(iv.lo if math.isfinite(iv.lo) else iv.mean, iv.hi if math.isfinite(iv.hi) else iv.mean) for iv in ivs]
    return {"steps": steps, "mean": [iv.mean for iv in ivs], "lo": [lo for lo, _ in finite],
            "hi": [hi for _, hi in finite]}


def ladder_steps(arms: dict[str, list[Run]], base: str) -> tuple[float, dict[str, dict]]:
    """The steps to a target (fig1, C1): target = lowest best validation accuracy over the base arm's seeds; per arm {seed: steps or None}."""
    best = [float(acc_series(r)[2].max()) for r in arms[base] if not r.diverged and len(acc_series(r)[2])]
    if not best:
        raise Missing(f"no finished {base} run with an accuracy series")
    target = min(best)
    return target, {name: {r.get("seed"): steps_to(r, target) for r in rs} for name, rs in arms.items()}


def prose(text: str) -> str:
    """A triple-quoted paragraph as one line (a claim's paper text)."""
    return " ".join(text.split())


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def diff(a: dict, b: dict) -> Interval:
    return stats.difference(a, b, "points")


def label(norm) -> str:
    """A norm's label in tables and legends, as registered (bnrepro/norm/); any other name as it is."""
    spec = NORMS.get(norm) if isinstance(norm, str) else None
    return spec.label if spec else str(norm)


# --- a claim and its verdict -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Claim:
    id: str
    title: str
    experiments: tuple[str, ...]  # run names it reads; the first that has runs is used
    paper: dict  # the paper's numbers: the one table text and figures read
    paper_text: str
    rule: Rule
    arm: Callable[[Run], tuple] | tuple[str, ...]  # what makes two runs different arms (the rest must match)
    judge: Callable[[list[Run]], Judged]
    designs: Mapping[str, Design] = field(default_factory=dict)  # per scale: frozen before confirmation runs


@dataclass
class Headline:
    """A claim judged on every dataset it ran on: a Result per dataset and the headline combined from them by
    rules.combine. `design_note` says under which frozen design (commit, n) it was judged, or that it was not."""

    id: str
    title: str
    paper: str
    verdict: str
    combined: str  # how the headline follows from the datasets' verdicts
    per_data: list[Result]
    design_note: str
    design: Design | None = None
    set_aside: int = 0  # runs of pilot or exploration seeds, not read by the verdict
    refused: list[str] = field(default_factory=list)  # confirmation runs outside the frozen design, and why

    @property
    def runs(self) -> list[Run]:
        return [run for r in self.per_data for run in r.runs]

    @property
    def failed(self) -> int:
        return sum(r.failed for r in self.per_data)

    @property
    def failed_text(self) -> str:
        """The failed-runs cell: "2", or "2 (1 unreadable)"."""
        unreadable = sum(r.unreadable for r in self.per_data)
        return f"{self.failed}" + (f" ({unreadable} unreadable)" if unreadable else "")

    def to_json(self) -> dict:
        return {"title": self.title, "verdict": self.verdict, "combined": self.combined, "paper": self.paper,
                "design": self.design_note, "set_aside": self.set_aside, "refused": self.refused,
                "data": {r.data or "all": r.to_json() for r in self.per_data}}


def judge_claim(claim: Claim, runs: list[Run]) -> Headline:
    """The claim on each dataset of its runs, under its frozen design for the runs' scale where there is one:
    only confirmation seeds are read, and confirmation runs outside the design are refused (not judged)."""
    mine = runs_of(claim, runs)
    scales = sorted({str(s) for run in mine if (s := run.summary.get("scale") or run.get("scale"))})
    design = claim.designs.get(scales[0]) if len(scales) == 1 else None
    set_aside, refused = 0, []
    if design is not None:
        read = [run for run in mine if role(run.get("seed")) == "confirmation" or not usable(run)]
        set_aside = len(mine) - len(read)
        refused = [f"{run.dir.name}: {why}" for run in read if usable(run) and (why := design.outside(run))]
        mine = read
        commit = design.commit or "not yet recorded"
        checked = "" if not design.commit or known(design.commit) else " (not checked: git does not know it here)"
        note = (f"design frozen at {commit}{checked} (scale {scales[0]}), n={design.n} confirmation seeds; "
                f"{set_aside} pilot/exploration runs set aside")
    else:
        note = (f"exploratory: no frozen design at scale {', '.join(scales) or '-'} (its numbers were not "
                "chosen before its runs)")
    named = sorted({str(d) for run in mine if (d := run.get("data.name")) is not None})
    datasets = list(design.data) if design else named or [""]
    if len(datasets) == 1 and not design:
        datasets = [""]  # one dataset, no design: judged together, as the runs are (a test's toy runs)
    per_data = []
    for i, data in enumerate(datasets):
        # a run whose config cannot be read has no dataset: counted (as failed) with the first
        subset = [run for run in mine if not data or cell(run, datasets) == data
                  or (i == 0 and run.get("data.name") is None)]
        if refused:
            result = _refused(claim, subset, data, refused)
        else:
            result = evaluate(claim, subset, data)
            if not subset and set_aside:
                result.ours = result.reason = (f"no confirmation runs on {data} ({set_aside} pilot/exploration "
                                               "runs set aside): `make reproduce` runs the confirmation seeds")
        per_data.append(result)
    verdict, combined = combine({r.data or "all": r.verdict for r in per_data})
    return Headline(claim.id, claim.title, claim.paper_text, verdict, combined, per_data, note, design, set_aside,
                    refused)


def _refused(claim: Claim, runs: list[Run], data: str, refused: list[str]) -> Result:
    result = Result(claim.id, claim.title, claim.experiments[0], claim.paper_text, claim.rule.text(), data)
    result.runs = runs
    result.verdict = INCONCLUSIVE
    result.reason = result.ours = (f"not judged: {len(refused)} confirmation runs are outside the frozen design "
                                   f"(e.g. {refused[0]}); rerun them from the design's config")
    result.deciding = result.reason
    return result


def evaluate(claim: Claim, runs: list[Run], data: str = "") -> Result:
    """The claim's verdict from the runs of its experiment (on one dataset, where `data` names it): not run (no
    runs, or an arm missing), inconclusive (unlike runs pooled, or untestable), else what its rule says."""
    result = Result(claim.id, claim.title, claim.experiments[0], claim.paper_text, claim.rule.text(), data)
    result.runs = runs_of(claim, runs)
    if result.runs:
        result.experiment = result.runs[0].name
    result.failed = sum(not usable(run) for run in result.runs)
    result.unreadable = sum(run.status == "unreadable" for run in result.runs)
    good = [run for run in result.runs if usable(run)]
    if not good:
        if result.runs:
            result.ours = result.reason = f"all {len(result.runs)} runs failed"
        return result
    try:
        check_pooling(arms_of(good, claim.arm))
        judged = claim.judge(good)
    except Missing as missing:
        result.ours = result.reason = f"{len(good)} runs, but {missing}"
        return result
    except (Unpoolable, Untestable) as why:
        result.verdict, result.ours, result.reason = INCONCLUSIVE, str(why), str(why)
        result.deciding = "not judged: " + str(why)
        return result
    result.verdict, result.deciding, result.checks = claim.rule.judge(judged.measured)
    result.numbers, result.ours, result.measured = judged.numbers, judged.ours, judged.measured
    result.numbers.setdefault("data", data_of(good))
    return result


def runs_of(claim: Claim, runs: list[Run]) -> list[Run]:
    """The runs of the claim's first experiment that has any (failed and unreadable ones included)."""
    return next((mine for name in claim.experiments if (mine := select(runs, name))), [])


def data_of(runs: list[Run]) -> str:
    """The dataset(s) the runs trained on (data.name), for the report's text and the figures' titles."""
    return ", ".join(sorted({str(run.get("data.name")) for run in runs}))
