"""Declarative verdict rules: a claim's preconditions and tests, each with its threshold and the source of it,
and one way of combining them into a verdict. The rule text in REPORT.md is generated from these objects.

One semantics for every test (issue 21). A test reads one `Interval` (95%, see stats.py) that the claim's judge
measured and has ONE boundary, its threshold; the three regions touch, so any true effect off the boundary is
decided with enough seeds (no dead zone):
  holds   - the interval lies wholly on the claim's side of the threshold,
  fails   - it lies wholly on the other side (the evidence is against the claim),
  unclear - it covers the threshold, or the number sits within the measure's float noise of it (no number of
            seeds decides a deterministic number that rounding alone could move across the line).
"About the same" is an equivalence test: TOST at alpha 0.05 with a margin fixed in advance; it holds when the
90% interval lies inside +-margin and fails when it lies wholly outside. `Test.decide` says, for an unclear test,
how many seeds would decide it at the observed spread, or that none can and what would."""
from __future__ import annotations

import math
from dataclasses import dataclass

from bnrepro.report.stats import ALPHA, LEVEL, MAX_SEEDS, POWER, Interval, seeds_needed

REPRODUCED, PARTLY, NOT_REPRODUCED, INCONCLUSIVE, NOT_RUN = (
    "reproduced", "partly", "not reproduced", "inconclusive", "not run")
OUTCOMES = (REPRODUCED, PARTLY, NOT_REPRODUCED, INCONCLUSIVE)
HOLDS, FAILS, UNCLEAR = "holds", "fails", "unclear"
PRECONDITION, CORE, SUPPORT = "precondition", "core", "support"
KINDS = ("greater", "less", "equivalent")


class _NotApplicable:
    """What a judge measures for a test that its cell's frozen design does not run (C17's sigmoid tests in a cell
    that runs ReLU only): the test is left out of that cell's checks and verdict. A missing or None measurement
    stays unclear; only this marker, set on purpose, removes a test."""

    def __repr__(self) -> str:
        return "NOT_APPLICABLE"


NOT_APPLICABLE = _NotApplicable()


def _num(x: float, unit: str) -> str:
    if unit == "points":
        return f"{100 * x:+g} points" if x else "0"
    if unit == "ratio":
        return f"{x:g}x"
    return f"{x:g}"


@dataclass(frozen=True)
class Test:
    """One statistical test of a rule. `key` names the judge's measurement it reads.

    kind: "greater"     holds if the interval lies above the threshold, fails if it lies below
          "less"        holds if it lies below, fails if it lies above
          "equivalent"  holds if TOST shows |difference| < threshold (the margin), fails if the TOST (90%) interval
                        lies wholly beyond it
    why: where the threshold comes from (the paper's number, measured noise, a stated bar): required.
    noise: the measure's float-noise floor (same units): within it of the threshold the test stays unclear.
    sesoi: the smallest effect of interest, as a distance from the threshold on the interval's scale (log for a
          ratio); designs are sized to detect it with 80% power. None: the unit's default (1 point; a factor 2)."""

    __test__ = False  # not a pytest test class

    key: str
    role: str  # precondition | core | support
    says: str  # what it establishes, in words
    measure: str  # the number tested, in words
    kind: str
    threshold: float
    unit: str = "points"  # points (accuracy differences), ratio, plain
    why: str = ""
    noise: float = 0.0
    sesoi: float | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"test {self.key}: kind {self.kind!r} is not one of {KINDS}")
        if not self.why.strip():
            raise ValueError(f"test {self.key}: say where its threshold comes from (why=...)")
        if self.kind == "equivalent" and not self.threshold > 0:
            raise ValueError(f"test {self.key}: an equivalence margin must be positive")

    def _boundaries(self) -> tuple[float, ...]:
        """The threshold(s) on the interval's symmetric scale (log for a ratio)."""
        t = math.log(self.threshold) if self.unit == "ratio" else self.threshold
        return (-t, t) if self.kind == "equivalent" else (t,)

    def _level(self) -> float:
        return 1 - 2 * ALPHA if self.kind == "equivalent" else LEVEL  # TOST: the 90% interval

    def outcome(self, iv: Interval | None) -> str:
        if iv is None or math.isnan(iv.mean):
            return UNCLEAR
        lo, hi = iv.bounds(self._level())
        if any(abs(iv.center() - b) <= self.noise for b in self._boundaries()):
            return UNCLEAR
        if self.kind == "equivalent":
            m = self._boundaries()[1]
            return HOLDS if -m < lo and hi < m else FAILS if lo > m or hi < -m else UNCLEAR
        (t,) = self._boundaries()
        above, below = lo > t, hi < t
        if self.kind == "greater":
            return HOLDS if above else FAILS if below else UNCLEAR
        return HOLDS if below else FAILS if above else UNCLEAR

    def effect(self) -> float:
        """The smallest effect of interest (distance from the threshold, the interval's scale)."""
        if self.sesoi is not None:
            return self.sesoi
        return math.log(2.0) if self.unit == "ratio" else 0.01 if self.unit == "points" else abs(self.threshold) / 2

    def decide(self, iv: Interval | None) -> str:
        """For an unclear test: the seeds that would decide it at the observed mean and spread (80% power), or
        why no number of seeds can. Empty for a decided test."""
        if self.outcome(iv) != UNCLEAR:
            return ""
        if iv is None or math.isnan(iv.mean):
            return "not measured: the runs lack the number (see the claim's notes)"
        c = iv.center()
        near = min(abs(c - b) for b in self._boundaries())
        if near <= self.noise:
            return ("no number of seeds: the value sits within float noise of the threshold; only a design whose "
                    "value is far from it (another precision, a larger effect) decides it")
        if iv.se is None or iv.df is None:
            return (f"n={iv.n} is too few for an interval" if iv.n < 2 else
                    "no number of seeds: the value is deterministic here; the design must change")
        sd = iv.se * math.sqrt(iv.n) if iv.test.startswith(("paired", "t")) else iv.se * math.sqrt(iv.n / 2)
        paired = not iv.test.startswith("Welch")
        if self.kind == "equivalent":
            m = self._boundaries()[1]
            distance = m - abs(c) if abs(c) < m else abs(c) - m
            n = seeds_needed(sd, distance, ALPHA, paired=paired)
        else:
            n = seeds_needed(sd, near, ALPHA / 2, paired=paired)
        if n is None:
            return (f"no affordable number of seeds (over {MAX_SEEDS:,} at the observed spread): the observed value "
                    "sits too close to the threshold; a design with a larger effect (budget, data) would decide it")
        seeds = (f"about {n} {'seed pairs' if paired else 'seeds per arm'} at the observed spread ({100 * POWER:g}% "
                 f"power; now {iv.n})")
        failing = (abs(c) > self._boundaries()[1] if self.kind == "equivalent"
                   else c > self._boundaries()[0] if self.kind == "less" else c < self._boundaries()[0])
        if self.role == PRECONDITION and failing:  # more seeds would most likely show it unmet: not a way forward
            return (f"{seeds} would most likely show it unmet (the estimate is on its failing side); the claim then "
                    "needs a design that meets it (budget, data)")
        return seeds

    def text(self) -> str:
        t, u = self.threshold, self.unit
        if self.kind == "greater":
            test = (f"holds if the {100 * LEVEL:g}% interval of {self.measure} lies above {_num(t, u)}, "
                    "fails if it lies below")
        elif self.kind == "less":
            test = (f"holds if the {100 * LEVEL:g}% interval of {self.measure} lies below {_num(t, u)}, "
                    "fails if it lies above")
        else:
            test = (f"holds if {self.measure} is shown within +-{_num(t, u).lstrip('+')} (TOST, alpha "
                    f"{ALPHA:.2g}: the 90% interval inside the margin), fails if that interval lies beyond it")
        noise = f"; unclear within {self.noise:g} of it (float noise)" if self.noise else ""
        return f"{self.says}: {test}{noise} ({self.why})"


@dataclass(frozen=True)
class Rule:
    """Preconditions, the core tests (the claim itself) and the supporting tests (the rest of the claim)."""

    tests: tuple[Test, ...]
    notes: str = ""  # how the numbers are measured (scores, selections), in words

    def of(self, role: str) -> list[Test]:
        return [t for t in self.tests if t.role == role]

    def text(self) -> str:
        parts = []
        for role, name in ((PRECONDITION, "Precondition"), (CORE, "Core"), (SUPPORT, "Support")):
            for test in self.of(role):
                parts.append(f"{name} [{test.key}]: {test.text()}.")
        return " ".join(parts + ([self.notes] if self.notes else []) + [COMBINATION])

    def judge(self, measured: dict[str, Interval | None]) -> tuple[str, str, list[dict]]:
        """(verdict, deciding test, checks) from the judge's intervals, keyed by test key."""
        checks = [{"key": t.key, "role": t.role, "says": t.says, "outcome": t.outcome(measured.get(t.key)),
                   "kind": t.kind, "threshold": t.threshold, "unit": t.unit, "decide": t.decide(measured.get(t.key)),
                   "interval": measured[t.key].to_json() if measured.get(t.key) is not None else None}
                  for t in self.tests if measured.get(t.key) is not NOT_APPLICABLE]
        by_role = {role: [c for c in checks if c["role"] == role] for role in (PRECONDITION, CORE, SUPPORT)}
        for c in by_role[PRECONDITION]:
            if c["outcome"] != HOLDS:
                return INCONCLUSIVE, f"precondition [{c['key']}] {c['outcome']}", checks
        for c in by_role[CORE]:
            if c["outcome"] == FAILS:
                return NOT_REPRODUCED, f"core [{c['key']}] fails", checks
        for c in by_role[CORE]:
            if c["outcome"] == UNCLEAR:
                return INCONCLUSIVE, f"core [{c['key']}] unclear", checks
        core = ", ".join(f"[{c['key']}]" for c in by_role[CORE])
        for c in by_role[SUPPORT]:
            if c["outcome"] != HOLDS:
                return PARTLY, f"core {core} holds; support [{c['key']}] {c['outcome']}", checks
        return REPRODUCED, f"core {core} and every support test hold", checks


COMBINATION = ("Verdict: inconclusive if a precondition does not hold; not reproduced if a core test fails; "
               "inconclusive if a core test is unclear; reproduced if every core and support test holds; "
               "partly if the core holds but a support test does not. Several tests: \"reproduced\" needs every "
               "core test to hold, an intersection-union test whose false-positive rate is at most each test's "
               "2.5% with no correction; \"not reproduced\" needs one core test to fail, so a claim with k core "
               "tests has a false-negative rate of at most k x 2.5% (Bonferroni), which is why claims keep k small.")

def combine(verdicts: dict[str, str]) -> tuple[str, str]:
    """A claim's headline from its verdict per dataset, by one rule for every claim (COMBINE says it)."""
    done = {d: v for d, v in verdicts.items() if v != NOT_RUN}
    if not done:
        return NOT_RUN, "not run on any dataset"
    say = "; ".join(f"{v} on {d}" for d, v in done.items())
    kinds = set(done.values())
    if len(kinds) == 1:
        verdict = kinds.pop()
    elif REPRODUCED in kinds and NOT_REPRODUCED in kinds:
        verdict, say = PARTLY, f"mixed: {say}"
    elif NOT_REPRODUCED in kinds and PARTLY not in kinds:
        verdict = NOT_REPRODUCED  # against the claim on one dataset, not for it on any
    elif kinds == {INCONCLUSIVE}:
        verdict = INCONCLUSIVE
    else:
        verdict = PARTLY
    missing = [d for d, v in verdicts.items() if v == NOT_RUN]
    return verdict, say + (f"; not run on {', '.join(missing)}" if missing else "")


COMBINE = (f"Headline per claim, from its verdict on each dataset it ran on: the common verdict when they agree; "
           f"**{PARTLY}** when one dataset reproduces it and another does not (mixed), or when one reproduces it "
           f"and another is partly or inconclusive; **{NOT_REPRODUCED}** when one dataset is against it and none "
           f"reproduces it even partly; **{INCONCLUSIVE}** when none decides. No dataset is chosen per claim: each "
           "claim runs on every embedded dataset its model can take, and every verdict is shown.")

HOW_TO_READ = (
    f"Every number is a mean over seeds with its {100 * LEVEL:g}% interval and n (runs, or seed pairs). "
    "Differences between arms are paired by seed (Student t on the per-seed differences) where both arms ran "
    "the same seeds, else Welch's t; ratios (speed-ups, drift ratios) get their interval on the log scale. "
    "A run is scored by `score`, its mean test accuracy over its last k evaluations, never by its best; any "
    "selection (a learning rate, a dropout rate, steps to a target) uses the validation split. A diverged "
    "run scores 0; failed runs are left out and counted. Each test "
    f"has one threshold and its source: it **holds** when its interval lies wholly on the claim's side, "
    "**fails** when it lies wholly on the other side (the evidence is against the claim), and is **unclear** "
    "when it covers the threshold or sits within the measure's float noise of it; the regions touch, so any true "
    "effect off the threshold is decided with enough seeds, and each unclear test says how many seeds (80% power, "
    "at the observed spread) would decide it, or that none can and what would. \"About the "
    f"same\" is an equivalence test (TOST, alpha {1 - LEVEL:.2g}) with a margin stated per claim. {COMBINATION} "
    f"The four outcomes: **{REPRODUCED}**, **{PARTLY}**, **{NOT_REPRODUCED}** (the evidence is against the "
    f"claim), **{INCONCLUSIVE}** (an interval covers both the effect and no effect, or a precondition - the "
    f"condition under which the claim is testable here - failed); **{NOT_RUN}** when the experiment has no runs. "
    "Runs are pooled as seeds only if their configs differ in nothing but the seed (and keys that do not change "
    "results: paths, logging, device, workers, threads); otherwise the claim is inconclusive and the report "
    f"names the differing keys. {COMBINE}")

