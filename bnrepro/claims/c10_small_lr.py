"""C10: At a small learning rate BN matters little."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from bnrepro.report import plots as P, stats, style
from bnrepro.report.design import Design
from bnrepro.report.judging import (
    DIRECTION, Claim, Judged, Missing, Result, SAME, TRAINS, arm_json, arms_of, by_seed, combo, diff, label,
    pick_by_val, score)

from bnrepro.report.panels import SCORE, TEST_ACC
from bnrepro.report.rules import CORE, PRECONDITION, Rule, SUPPORT, Test
from bnrepro.report.runs import Run
from bnrepro.report.stats import Interval
from bnrepro.report.style import color, dot, legend, zoom
from bnrepro.schema import Group

RULE_C10 = Rule((
    Test("bn_lr_higher", PRECONDITION, "BN's best LR exceeds the largest LR at which no BN trains",
         "log(BN's best LR / no-BN's largest training LR)", "greater", 0.0, unit="plain",
         why=f"'trains' = no seed diverged and a mean score within {100 * TRAINS:g} points of no-BN's best"),
    Test("small_same", CORE, "at the smallest shared LR, BN and no BN score about the same",
         "score(BN) - score(no BN) at the smallest LR", "equivalent", SAME,
         why=f"margin {100 * SAME:g} point, the smallest gain the rules count"),
    Test("gap_grows", SUPPORT, "BN's advantage at each arm's own best LR exceeds that at the small LR",
         "[score(BN, best) - score(none, best)] - [score(BN, small) - score(none, small)]", "greater", 0.0,
         why=DIRECTION),
), notes="Both arms run the same LR grid, each to convergence; best LR per arm by mean validation score.")


def judge_c10(runs: list[Run]) -> Judged:
    arms = arms_of(runs, ("model.norm", "optim.lr_mult"))
    shared = sorted({lr for n, lr in arms if n == "bn"} & {lr for n, lr in arms if n == "none"})
    if len(shared) < 2:
        raise Missing("fewer than two learning rates shared by BN and no BN")
    small = shared[0]
    s = {k: by_seed(rs, score) for k, rs in arms.items()}
    best = {n: pick_by_val({k: rs for k, rs in arms.items() if k[0] == n}, f"{label(n)}'s best LR")
            for n in ("bn", "none")}
    none_best = float(np.mean(list(s[best["none"]].values())))
    trains = [lr for (n, lr), rs in arms.items() if n == "none" and not any(r.diverged for r in rs)
              and np.mean(list(s[(n, lr)].values())) >= none_best - TRAINS]
    top_train = max(trains) if trains else None
    x = math.log(best["bn"][1] / top_train) if top_train else math.nan
    gap = {k: combo(s[("bn", lr)], s[("none", lr2)], 1.0, -1.0)
           for k, lr, lr2 in (("best", best["bn"][1], best["none"][1]), ("small", small, small))}
    measured = {"bn_lr_higher": Interval("selection", x, x, x, 1, "plain"),
                "small_same": stats.tost(s[("bn", small)], s[("none", small)], SAME),
                "gap_grows": diff(gap["best"], gap["small"])}
    numbers = {"arms": {f"{label(n)}, x{lr:g}": arm_json(v) for (n, lr), v in s.items()},
               "best_lr_mult": {label(n): k[1] for n, k in best.items()}, "small_lr_mult": small,
               "none_largest_training_lr_mult": top_train,
               "gap": {k: arm_json(v, "points") for k, v in gap.items()}}
    return Judged(measured, numbers, f"at x{small:g}: BN - no BN {measured['small_same'].fmt()}; "
                                     f"at own best LRs {numbers['gap']['best']['text']}")


# --- the figure ---------------------------------------------------------------------------------------------------

def c10(result: Result):
    n = result.numbers
    fig, gs = P.frame(result, 16, 6, (1, 2), ratios=[1.3, 1], test_width=1.0)
    a, b = fig.add_subplot(gs[0, 0]), fig.add_subplot(gs[0, 1])
    series = P.by_norm(n["arms"], P.parse_lr)
    pts = P.lines(a, series, dodge=1.08)
    P.log_x(a, [x for v in series.values() for x, _ in v], "learning rate multiplier (LR x)")
    a.axvline(n["small_lr_mult"], color="black", ls=":", lw=1, label=f"smallest shared LR x{n['small_lr_mult']:g}")
    order = list(series)
    for norm, lr in n["best_lr_mult"].items():
        cell = n["arms"].get(f"{norm}, x{lr:g}")
        if cell and norm in order:  # on the dodged x of its norm's dots
            x = lr * 1.08 ** (order.index(norm) - (len(order) - 1) / 2)
            a.plot([x], [100 * cell["mean"]], marker="*", markersize=13, color=color(norm), linestyle="none",
                   markeredgecolor="black", label=f"{norm}'s best LR (validation): x{lr:g}")
    zoom(a, pts, label="score, test accuracy (%)")
    a.set_title("(a) score per learning rate")
    legend(a)
    gap = n["gap"]
    names = {"small": f"at the smallest LR x{n['small_lr_mult']:g}", "best": "at each arm's best LR"}
    gpts = [dot(b, i, gap[k], col="black") for i, k in enumerate(("small", "best")) if k in gap]
    margin = next((c["threshold"] for c in result.checks if c["key"] == "small_same"), None)
    if margin:
        b.axhspan(-100 * margin, 100 * margin, color="0.85", zorder=0, label=f"+-{100 * margin:g} point margin")
        gpts.append((0, -100 * margin, -100 * margin, 100 * margin))
    b.axhline(0, color="black", lw=0.8)
    style.categories(b, [names[k] for k in ("small", "best") if k in gap], 18)
    zoom(b, gpts, " points", label="BN - no BN score (points)")
    b.set_title("(b) BN's advantage")
    legend(b)
    P.caption(fig, result, ["BN", "no BN"], "The paper's claim is qualitative (no number to draw). A diverged run "
              "scores 0 (drawn as v below the axis when off the range).")
    return fig


class Params(Group):
    """The claim's own config keys (claim_params: in its config files), checked at the door."""
    c10_budget: Optional[dict[str, int]] = None  # steps at x1 and the cap of the 1/LR-scaled budget



PILOT_CPU = (
    "exploration runs, seeds 0-4 (results/cpu at dd16a63, `python -m bnrepro.report.power runs/cpu`), MNIST-1D "
    "only: the precondition bn_lr_higher fails (BN's best LR below no BN's largest training one); small_same +22.2 "
    "points at x0.01, which is unconverged (a known flaw of this design: unequal LR x steps per arm, not yet "
    "redesigned). n capped at 5 seeds per arm by the suite's 30-minute budget on 2 cores (both datasets).")
# The design, frozen before the confirmation seeds ran (bnrepro/report/design.py): the report judges only
# confirmation runs of this config, and names the commit.
DESIGNS = {"cpu": Design(
    data=('digits', 'mnist1d'),
    config={"claim_params.c10_budget.steps": {"digits": 1500, "mnist1d": 3000},
            "claim_params.c10_budget.cap": 8000,
            "trainer.eval_every": 250},
    n=5,
    pilot=PILOT_CPU)}


CLAIM = Claim(
    "C10", "At a small learning rate BN matters little", ("c10_small_lr",), {},
    "Bjorck et al.: at the same small learning rate, BN and no-BN nets reach similar accuracy; BN's main "
    "benefit is that it allows much larger learning rates", RULE_C10, ("model.norm", "optim.lr_mult"),
    judge_c10, designs=DESIGNS)
FIGURE = c10


# --- the W&B Report's panels (bnrepro/report/panels.py) -----------------------------------------------------------

PANELS = [TEST_ACC, SCORE]
