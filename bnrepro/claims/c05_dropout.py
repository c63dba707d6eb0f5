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
), notes="Best dropout rate > 0 per arm: the highest mean validation score. The train - test gap is reported, "
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
    "exploration runs, seeds 0-4 (results/cpu at dd16a63, `python -m bnrepro.report.power runs/cpu`), MNIST-1D "
    "only: the precondition dropout_helps fails, -9.1 points [-10.7, -7.5] (at 3,000 steps every arm underfits: a "
    "known flaw of this design, not yet redesigned); unnecessary +18.8, sd 1.4 (n=19 for 1 point). n capped at 5 "
    "seeds per arm by the suite's 30-minute budget on 2 cores (both datasets).")
# The design, frozen before the confirmation seeds ran (bnrepro/report/design.py): the report judges only
# confirmation runs of this config, and names the commit.
DESIGNS = {"cpu": Design(
    data=('digits', 'mnist1d'),
    config={"trainer.max_steps": 3000, "trainer.eval_every": 250},
    n=5,
    pilot=PILOT_CPU)}


CLAIM = Claim(
    "C5", "BN regularizes and makes dropout unnecessary", ("c5_dropout",), PAPER_C5,
    "BN-x5 removes dropout with no loss of validation accuracy (section 4.2.1); BN acts as a regularizer "
    "(section 3.4)", RULE_C5, ("model.norm", "model.dropout"), judge_c5, designs=DESIGNS)
FIGURE = c5


# --- the W&B Report's panels (bnrepro/report/panels.py) -----------------------------------------------------------

PANELS = [TEST_ACC, line("training accuracy vs step (gap to test)", ["train_acc"]),
          bar("final train vs test accuracy", ["final_train_acc", "final_acc"])]
