"""Declarative verdict rules: a claim's preconditions and tests, each with its threshold and the reason for it,
and one way of combining them into a verdict. The rule text in REPORT.md is generated from these objects.

A test reads one `Interval` (95%, see stats.py) that the claim's judge measured and comes out
  holds   - the interval lies wholly on the claim's side of the threshold,
  fails   - the interval lies wholly on the other side of the "fails" bound (the evidence is against it),
  unclear - the interval covers both (or the number could not be measured)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from bnrepro.report.stats import LEVEL, Interval

REPRODUCED, PARTLY, NOT_REPRODUCED, INCONCLUSIVE, NOT_RUN = (
    "reproduced", "partly", "not reproduced", "inconclusive", "not run")
OUTCOMES = (REPRODUCED, PARTLY, NOT_REPRODUCED, INCONCLUSIVE)
HOLDS, FAILS, UNCLEAR = "holds", "fails", "unclear"
PRECONDITION, CORE, SUPPORT = "precondition", "core", "support"


def _num(x: float, unit: str) -> str:
    if unit == "points":
        return f"{100 * x:+g} points" if x else "0"
    if unit == "ratio":
        return f"{x:g}x"
    return f"{x:g}"


@dataclass(frozen=True)
class Test:
    """One statistical test of a rule. `key` names the judge's measurement it reads.

    kind: "greater"     holds if CI low > threshold; fails if CI high < fail_at
          "less"        holds if CI high < threshold; fails if CI low > fail_at
          "equivalent"  holds if TOST shows |difference| < threshold (margin); fails if the CI lies beyond it"""

    __test__ = False  # not a pytest test class

    key: str
    role: str  # precondition | core | support
    says: str  # what it establishes, in words
    measure: str  # the number tested, in words
    kind: str
    threshold: float
    fail_at: float | None = None  # None: the same as the threshold
    unit: str = "points"  # points (accuracy differences), ratio, plain
    why: str = ""  # why this threshold (or margin)
    noise: float = 0.0  # the measure's float-noise floor (the value a perfect result can still show)

    def outcome(self, iv: Interval | None) -> str:
        if iv is None or math.isnan(iv.mean):
            return UNCLEAR
        fail_at = self.threshold if self.fail_at is None else self.fail_at
        if self.kind == "greater":
            return HOLDS if iv.lo > self.threshold else FAILS if iv.hi < fail_at else UNCLEAR
        if self.kind == "less":
            return HOLDS if iv.hi < self.threshold else FAILS if iv.lo > fail_at else UNCLEAR
        if self.kind == "equivalent":
            if iv.p_tost is not None and iv.p_tost < 1 - LEVEL:
                return HOLDS
            return FAILS if iv.lo > self.threshold or iv.hi < -self.threshold else UNCLEAR
        raise ValueError(self.kind)

    def text(self) -> str:
        t, u = self.threshold, self.unit
        f = t if self.fail_at is None else self.fail_at
        if self.kind == "greater":
            test = (f"holds if the {100 * LEVEL:g}% interval of {self.measure} lies above {_num(t, u)}, "
                    f"fails if it lies below {_num(f, u)}")
        elif self.kind == "less":
            test = (f"holds if the {100 * LEVEL:g}% interval of {self.measure} lies below {_num(t, u)}, "
                    f"fails if it lies above {_num(f, u)}")
        else:
            test = (f"holds if {self.measure} is shown within +-{_num(t, u).lstrip('+')} (TOST, alpha "
                    f"{1 - LEVEL:.2g}), fails if its interval lies beyond the margin")
        return f"{self.says}: {test}" + (f" ({self.why})" if self.why else "")


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
                   "kind": t.kind, "threshold": t.threshold, "unit": t.unit,
                   "fail_at": t.threshold if t.fail_at is None else t.fail_at,
                   "interval": measured[t.key].to_json() if measured.get(t.key) is not None else None}
                  for t in self.tests]
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
               "partly if the core holds but a support test does not.")

HOW_TO_READ = (
    f"Every number is a mean over seeds with its {100 * LEVEL:g}% interval and n (runs, or seed pairs). "
    "Differences between arms are paired by seed (Student t on the per-seed differences) where both arms ran "
    "the same seeds, else Welch's t; ratios (speed-ups, drift ratios) get their interval on the log scale. "
    "A run is scored by `score`, its mean test accuracy over its last k evaluations, never by its best; any "
    "selection (a learning rate, a dropout rate, steps to a target) uses the validation split. A diverged "
    "run scores 0; failed runs are left out and counted. Each test "
    f"**holds** when its interval lies wholly on the claim's side of its threshold, **fails** when it lies "
    "wholly on the other side (the evidence is against the claim), and is **unclear** otherwise; \"about the "
    f"same\" is an equivalence test (TOST, alpha {1 - LEVEL:.2g}) with a margin stated per claim. {COMBINATION} "
    f"The four outcomes: **{REPRODUCED}**, **{PARTLY}**, **{NOT_REPRODUCED}** (the evidence is against the "
    f"claim), **{INCONCLUSIVE}** (an interval covers both the effect and no effect, or a precondition - the "
    f"condition under which the claim is testable here - failed); **{NOT_RUN}** when the experiment has no runs. "
    "Runs are pooled as seeds only if their configs differ in nothing but the seed (and keys that do not change "
    "results: paths, logging, device, workers, threads); otherwise the claim is inconclusive and the report "
    "names the differing keys.")

