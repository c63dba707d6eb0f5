"""The claims, one module each: fig1.py, c01_speed.py ... c15_folding.py. A module holds everything about its
claim: the paper's numbers, the Rule (thresholds fixed before any run), the judge, the figure, and `CLAIM` (a
bnrepro.report.judging.Claim), `FIGURE` (Result -> matplotlib Figure) and `PANELS` (the W&B Report's, a list or
a function of the Result: bnrepro/report/panels.py); optionally `TEST_MARKS`, the paper's value of a tested
quantity drawn on the figure's tests panel, and `Params`, the schema (a bnrepro.schema.Group) of the claim's own
config keys, `claim_params:` in its config files, which the door checks. They are built from the report's public machinery
(judging.py, rules.py, stats.py, plots.py, style.py).

The modules are found, not listed: every module of this package is a claim, in claim order (fig1, then C1..C15),
which is the order of REPORT.md's table. CONTRIBUTING.md has the recipe for adding one.
"""
from __future__ import annotations

import importlib
import pkgutil

from bnrepro.arms import claim_order
from bnrepro.report.judging import Claim, Headline, judge_claim
from bnrepro.report.runs import Run

MODULES = [importlib.import_module(f"{__name__}.{m.name}")
           for m in sorted(pkgutil.iter_modules(__path__), key=lambda m: claim_order(m.name))]
CLAIMS: tuple[Claim, ...] = tuple(m.CLAIM for m in MODULES)
FIGURES = {m.CLAIM.id: m.FIGURE for m in MODULES}
TEST_MARKS = {m.CLAIM.id: m.TEST_MARKS for m in MODULES if hasattr(m, "TEST_MARKS")}
PANELS = {m.CLAIM.id: m.PANELS for m in MODULES if hasattr(m, "PANELS")}  # the W&B Report's (wandb_report.py)
PARAMS = {m.CLAIM.id: m.Params for m in MODULES if hasattr(m, "Params")}  # the schema of each claim's claim_params


def evaluate_all(runs: list[Run]) -> list[Headline]:
    """Every claim, judged per dataset under its frozen design (bnrepro/report/design.py)."""
    return [judge_claim(claim, runs) for claim in CLAIMS]
