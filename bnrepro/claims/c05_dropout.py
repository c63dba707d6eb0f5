"""C5: BN regularizes and makes dropout unnecessary."""
from __future__ import annotations

from typing import Optional

from bnrepro.report import plots as P, stats, style
from bnrepro.report.design import Design
from bnrepro.report.judging import (
    DIRECTION, Claim, Judged, Missing, Result, SAME, arm_json, arms_of, by_seed, diff, label, need, pick_by_val,
    score, train_test_gap)

from bnrepro.report.panels import TEST_ACC, bar, line
from bnrepro.report.rules import CORE, PRECONDITION, Rule, SUPPORT, Test
from bnrepro.report.runs import Run
from bnrepro.report.style import legend, zoom
from bnrepro.report.properties import Property
from bnrepro.schema import Group

PAPER_C5 = {"dropout_removed": "BN-x5", "acc_loss": 0.0}
FITS = 0.99  # "fits its training split": at least 99% training accuracy (a regime with something to regularize)
RULE_C5 = Rule((
    Test("overfits", PRECONDITION, "the no-BN net without dropout fits its (small) training split, so there is "
         "something to regularize", "final training accuracy of no BN, dropout 0", "greater", FITS,
         why=f"a stated bar: {100 * FITS:g}% training accuracy, i.e. (near) zero training error, the regime in "
             "which dropout is a regularizer rather than a handicap (issue 21)"),
    Test("dropout_helps", PRECONDITION, "dropout measurably helps the no-BN net (else the claim is untestable here)",
         "score(no BN, best dropout > 0) - score(no BN, dropout 0)", "greater", 0.0, why=DIRECTION),
    Test("unnecessary", CORE, "with BN, removing dropout loses nothing",
         "score(BN, dropout 0) - score(BN, best dropout > 0)", "greater", -SAME,
         why=f"non-inferiority margin {100 * SAME:g} point; shown, not merely 'not significantly worse'"),
    Test("replaces", SUPPORT, "BN alone does as well as no BN with its best dropout",
         "score(BN, dropout 0) - score(no BN, best dropout > 0)", "greater", -SAME,
         why=f"non-inferiority margin {100 * SAME:g} point"),
), notes="Every arm trains on the same small stratified training subset (data.train_examples) until no BN fits "
         "it. Best dropout rate > 0 per arm: the highest mean validation score. The train - test gap is reported, "
         "not tested (it restates the accuracy gap).")


def judge_c5(runs: list[Run]) -> Judged:
    arms = arms_of(runs, ("model.norm", "model.dropout"))
    for key in (("bn", 0.0), ("none", 0.0)):
        need(arms, key, f"{label(key[0])} without dropout")
    best = {}
    for norm in ("bn", "none"):
        rates = {k: rs for k, rs in arms.items() if k[0] == norm and k[1] > 0}
        if not rates:
            raise Missing(f"no {label(norm)} runs with dropout > 0")
        best[norm] = pick_by_val(rates, f"{label(norm)}'s best dropout")
    s = {k: by_seed(rs, score) for k, rs in arms.items()}
    fits = [v for run in arms[("none", 0.0)] if not run.diverged and (v := run.summary.get("final_train_acc")) is not None]
    measured = {"overfits": stats.mean_ci(fits, "acc") if fits else None,
                "dropout_helps": diff(s[best["none"]], s[("none", 0.0)]),
                "unnecessary": diff(s[("bn", 0.0)], s[best["bn"]]),
                "replaces": diff(s[("bn", 0.0)], s[best["none"]])}
    numbers = {"arms": {f"{label(n)}, dropout {p:g}": arm_json(v) for (n, p), v in s.items()},
               "train_test_gap": {f"{label(n)}, dropout {p:g}": arm_json(by_seed(rs, train_test_gap), "points")
                                  for (n, p), rs in arms.items()},
               "best_dropout": {label(n): k[1] for n, k in best.items()}}
    gap = numbers["train_test_gap"].get("no BN, dropout 0", {}).get("text", "?")
    return Judged(measured, numbers, f"no BN, dropout 0: train - test {gap}; "
                                     f"dropout helps no BN by {measured['dropout_helps'].fmt()}; BN without vs "
                                     f"with dropout {measured['unnecessary'].fmt()}")


# the paper's value of a tested quantity, drawn on the tests panel
TEST_MARKS = {"unnecessary": (100 * PAPER_C5["acc_loss"], "paper: BN-x5 lost 0 points without dropout")}


# --- the figure ---------------------------------------------------------------------------------------------------

def c5(result: Result):
    n = result.numbers
    fig, gs = P.frame(result, 16, 5.8, (1, 2), test_width=1.0, marks=TEST_MARKS)
    a, b = fig.add_subplot(gs[0, 0]), fig.add_subplot(gs[0, 1])
    rates = sorted({P.parse_after(k, "dropout")[1] for k in n["arms"]})
    pos = {r: i for i, r in enumerate(rates)}
    for ax, arms, scale, unit, ylabel in ((a, n["arms"], 100.0, "%", "score, test accuracy (%)"),
                                          (b, n["train_test_gap"], 100.0, " points", "train - test accuracy (points)")):
        series = P.by_norm(arms, lambda k: P.parse_after(k, "dropout"))
        series = {norm: [(pos[r] + (-0.08 if norm == "BN" else 0.08), c) for r, c in v] for norm, v in series.items()}
        zoom(ax, P.lines(ax, series, scale), unit, label=ylabel)
        style.categories(ax, [f"dropout {r:g}" for r in rates])
        legend(ax)
    best = ", ".join(f"{k} {v:g}" for k, v in n.get("best_dropout", {}).items())
    a.set_title(f"(a) score per dropout rate (best > 0 on validation: {best})")
    b.set_title("(b) train - test gap per dropout rate")
    P.caption(fig, result, ["BN", "no BN"])
    return fig


class Params(Group):
    """The claim's own config keys (claim_params: in its config files), checked at the door."""
    c5_train_examples: Optional[dict[str, int]] = None  # the small training subset per dataset (data.train_examples)


PILOT_CPU = (
    "exploration (seeds 0-4, all training examples, 3,000 steps, MNIST-1D): every arm underfit (no BN: 47% "
    "training accuracy) and dropout 'helped' no BN by -9.1 points. Regime chosen on pilot seed 1000 (no BN only): "
    "digits 150 / 300 examples and MNIST-1D 500 / 1,000 / 1,500, 6,000 steps: no BN fits 300 digits by step 500 "
    "(test 95%) and 1,000 MNIST-1D examples by step 3,000 (test 39%); dropout 0.4 slows the sigmoid net so much "
    "that it had not fit MNIST-1D by 4,000 steps and scored below dropout 0 on both (dropped); a ReLU net (300 "
    "examples) showed no more help from dropout than the sigmoid one. Pilot seeds 1000-1002 (3 of 1000-1004: "
    "the machine was shared and slow), no-BN arms, the frozen design (digits 300 examples, 1,500 steps; MNIST-1D "
    "1,000, 6,000 steps): no BN at dropout 0 reaches 100% training accuracy on both (train - test gap: digits "
    "5.6-6.1 points, MNIST-1D 60.9-62.8). dropout_helps (best rate by validation: 0.1 on both): MNIST-1D +3.3 "
    "points [-0.9, +7.4], sd 1.7 (n=5 for the observed effect, 25 for 1 point); digits +0.1 [-0.9, +1.1], sd 0.4 "
    "(n=291 for the observed effect: on digits dropout does not help this net even when it fits its training "
    "split, so the precondition is expected to leave digits inconclusive, which no affordable n changes). BN arms "
    "not piloted (exploration sd of 'unnecessary' 1.4 points: n=19 for 1 point). n capped at 5 seeds per arm by "
    "the suite's 30-minute budget on 2 cores. Cost: digits 30 runs x 1,500 steps + MNIST-1D 30 x 6,000 = 225k "
    "steps, ~225 run-seconds at ~1 ms/step, against the old design's 180k steps (1.25x).")
# The design, frozen before the confirmation seeds ran (bnrepro/report/design.py): the report judges only
# confirmation runs of this config, and names the commit.
DESIGNS = {"cpu": Design(
    data=('digits', 'mnist1d'),
    config={"trainer.max_steps": {"digits": 1500, "mnist1d": 6000}, "trainer.eval_every": 500,
            "data.train_examples": {"digits": 300, "mnist1d": 1000}},
    n=5,
    pilot=PILOT_CPU,
    commit="902df75")}


CLAIM = Claim(
    "C5", "BN regularizes and makes dropout unnecessary", ("c5_dropout",), PAPER_C5,
    "BN-x5 removes dropout with no loss of validation accuracy (section 4.2.1); BN acts as a regularizer "
    "(section 3.4)", RULE_C5, ("model.norm", "model.dropout"), judge_c5, designs=DESIGNS)
FIGURE = c5


# --- the W&B Report's panels (bnrepro/report/panels.py) -----------------------------------------------------------

PANELS = [TEST_ACC, line("training accuracy vs step (gap to test)", ["train_acc"]),
          bar("final train vs test accuracy", ["final_train_acc", "final_acc"])]


# --- BN's property this claim gives the scorecard (bnrepro/report/properties.py, bnrepro/scorecard/) -----------

PROPERTY = Property(
    "regularizes (reduces the need for dropout)", "regularizes", "unnecessary",
    reference=("model.norm=bn,none",))
