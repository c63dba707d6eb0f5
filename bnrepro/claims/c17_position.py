"""C17: BN before the nonlinearity (the paper's placement) trains at least as well as BN after it.

The sources disagree. The paper (section 3.2): "we add the BN transform immediately before the nonlinearity, by
normalizing x = Wu + b", arguing that Wu + b is "more likely to have a symmetric, non-sparse distribution, that
is more Gaussian", whose normalization yields activations with a stable distribution, while the layer input u,
a nonlinearity's output, has a shape that is likely to change during training. Widely read descriptions
(course notes, library tutorials) say BN is "commonly applied after activation functions", and practitioners'
benchmarks and forum threads report the post-activation order as equal or better for ReLU nets; neither side
gives a controlled comparison we could retrieve here, so no number stands beside ours.

Experiment c17_position: model.norm_position=pre|post, everything else equal (every model family builds either
order: tests/test_norm_position.py), sigmoid and ReLU, the points of group c17_point: the LR grid x1, x5, x30
(C2's multipliers) and the init scales x0.1, x10 at x1 (C6's). Per cell and activation:
- score: each placement at its own LR, chosen on the validation split from the grid (mean over seeds), scored
  on the test split (core: non-inferiority of pre, at least as well within SAME);
- LR tolerance (C2's test, support): the score at x30 minus the score at x1, pre's no worse than post's by SAME;
- init sensitivity (C6's measure, support): per seed, the spread (max - min) of the score over init x0.1, x1,
  x10 at x1; pre's no larger than post's by SAME;
- steps to a target (described): the validation steps each placement needs, at its chosen LR, to reach the
  lowest best validation accuracy of any of their seeds (every seed reaches it), as a ratio post / pre.
"""
from __future__ import annotations

from bnrepro.report import plots as P
from bnrepro.report import stats
from bnrepro.report.design import Design
from bnrepro.report.judging import (
    SAME, Claim, Judged, Missing, Result, acc_series, arm_json, arms_of, by_seed, diff, pick_by_val, ratio_steps,
    score, steps_to)
from bnrepro.report.panels import SCORE, TEST_ACC
from bnrepro.report.rules import CORE, NOT_APPLICABLE, SUPPORT, Rule, Test
from bnrepro.report.runs import Run

ACTS = ("sigmoid", "relu")
POSITIONS = ("pre", "post")
LR_GRID = (1.0, 5.0, 30.0)
INITS = (0.1, 1.0, 10.0)
PAPER = {"quote": "we add the BN transform immediately before the nonlinearity, by normalizing x = Wu + b",
         "section": "3.2", "numbers": None,
         "other_side": "\"commonly applied after activation functions\" (widely read descriptions); practitioners "
                       "report post-activation BN as equal or better for ReLU nets (no controlled number retrieved)"}

NONINF = (f"non-inferiority margin {100 * SAME:g} point (SAME), fixed in advance: the claim is 'at least as well', "
          "not 'better'")
RULE = Rule((
    *(Test(f"score_{act}", CORE, f"{act}: BN before the nonlinearity scores at least as well as after it",
           f"score(pre) - score(post), each at its validation-chosen LR ({act})", "greater", -SAME, why=NONINF)
      for act in ACTS),
    *(Test(f"lr_tolerance_{act}", SUPPORT, f"{act}: before the nonlinearity, BN tolerates the largest LR as well",
           f"[score(x30) - score(x1)](pre) - [same](post) ({act})", "greater", -SAME, why=NONINF + "; C2's test")
      for act in ACTS),
    *(Test(f"init_{act}", SUPPORT, f"{act}: before the nonlinearity, BN is no more sensitive to initialization",
           f"spread over init x0.1, x1, x10 of score: post - pre ({act})", "greater", -SAME,
           why=NONINF + "; C6's measure")
      for act in ACTS),
), notes="Each placement's LR is chosen on validation from x1, x5, x30 of the base rate (mean over seeds), at the "
         "default init; scores are the test split's (mean over the last evaluations). Spread = per seed max - min of "
         "the score over the init scales at x1. Steps to target at each placement's chosen LR are reported beside "
         "(ratio pre / post), not tested. Seeds paired across placements.")


def point(run: Run) -> tuple:
    """(placement, activation, LR multiplier, init scale) of a run."""
    return (run.get("model.norm_position") or "pre", run.get("model.act"), float(run.get("optim.lr_mult", 1.0)),
            float(run.get("model.init_scale") or 1.0))


def judge_act(arms: dict, act: str) -> tuple[dict, dict, str] | None:
    """One activation's measurements, numbers and line; None where the cell's design does not run it (cpu:
    ResNet-8 is ReLU only)."""
    s = {k: by_seed(rs, score) for k, rs in arms.items() if k[1] == act}
    if not s:
        return None

    def at(pos, lr=1.0, init=1.0) -> dict:
        if (pos, act, lr, init) not in s:
            raise Missing(f"no runs of model.norm_position={pos} model.act={act} at LR x{lr:g}, init x{init:g}")
        return s[(pos, act, lr, init)]

    chosen = {pos: pick_by_val({k: rs for k, rs in arms.items() if k[:2] == (pos, act) and k[3] == 1.0},
                               f"{pos}'s LR ({act})") for pos in POSITIONS}
    chosen_score = {pos: s[chosen[pos]] for pos in POSITIONS}
    drops = {pos: {sd: v - at(pos)[sd] for sd, v in at(pos, LR_GRID[-1]).items() if sd in at(pos)}
             for pos in POSITIONS}
    spreads = {}
    for pos in POSITIONS:
        mine = [at(pos, init=i) for i in INITS]
        spreads[pos] = {sd: max(m[sd] for m in mine) - min(m[sd] for m in mine)
                        for sd in set.intersection(*(set(m) for m in mine))}
    measured = {f"score_{act}": diff(chosen_score["pre"], chosen_score["post"]),
                f"lr_tolerance_{act}": diff(drops["pre"], drops["post"]),
                f"init_{act}": diff(spreads["post"], spreads["pre"])}
    # the target: the lowest best validation accuracy of any seed of either placement at its chosen LR, so
    # every seed reaches it (the pilot's mean-of-bests target left seeds short, and the ratio unmeasured)
    best = [float(series.max()) for pos in POSITIONS for r in arms[chosen[pos]] if not r.diverged
            and len(series := acc_series(r)[2])]
    target = min(best) if best else None
    # None: the seed never reached the target (ratio_steps counts it)
    steps = {pos: {r.get("seed"): steps_to(r, target) for r in arms[chosen[pos]]} for pos in POSITIONS}
    speed = ratio_steps(steps["post"], steps["pre"]) if target else None  # steps(post) / steps(pre): > 1, pre faster
    numbers = {
        "chosen_lr": {pos: chosen[pos][2] for pos in POSITIONS},
        "score": {pos: arm_json(chosen_score[pos]) for pos in POSITIONS},
        "lr_drop": {pos: arm_json(drops[pos], "points") for pos in POSITIONS},
        "init_spread": {pos: arm_json(spreads[pos], "points") for pos in POSITIONS},
        "steps_target": target, "speedup_pre": speed.to_json() if speed else None,
        "grid": {f"{pos}, x{lr:g}": arm_json(s[(pos, act, lr, 1.0)]) for pos in POSITIONS
                 for lr in LR_GRID if (pos, act, lr, 1.0) in s},
        "inits": {f"{pos}, init x{i:g}": arm_json(s[(pos, act, 1.0, i)]) for pos in POSITIONS
                  for i in INITS if (pos, act, 1.0, i) in s}}
    line = (f"{act}: pre - post {measured[f'score_{act}'].fmt()} (pre at x{chosen['pre'][2]:g}, post at "
            f"x{chosen['post'][2]:g})")
    return measured, numbers, line


def judge(runs: list[Run]) -> Judged:
    arms = arms_of(runs, point)
    measured, numbers, ours = {}, {"acts": {}}, []
    for act in ACTS:
        judged = judge_act(arms, act)
        if judged is None:  # the act's tests are left out of this cell's verdict
            measured.update({t.key: NOT_APPLICABLE for t in RULE.tests if t.key.endswith(f"_{act}")})
            continue
        measured.update(judged[0])
        numbers["acts"][act] = judged[1]
        ours.append(judged[2])
    if not numbers["acts"]:
        raise Missing("no runs of either activation")
    return Judged(measured, numbers, "; ".join(ours))


def figure(result: Result):
    """Per activation: (a) the score over the LR grid, pre vs post (the chosen LR marked); (b) the score over the
    init scales at x1; the tests on the right."""
    from bnrepro.report.style import legend

    n = result.numbers
    acts = [a for a in ACTS if a in n.get("acts", {})]
    fig, gs = P.frame(result, 5.2 * 2 * max(1, len(acts)) + 4, 6.2, (1, 2 * max(1, len(acts))), test_width=1.2)
    colors = {"pre": "#1f77b4", "post": "#ff7f0e"}
    for j, act in enumerate(acts):
        a = n["acts"][act]
        for k, (what, xs, fmt, title) in enumerate(
                (("grid", LR_GRID, "{pos}, x{v:g}", "LR multiplier (x base)"),
                 ("inits", INITS, "{pos}, init x{v:g}", "init scale (x default), at x1"))):
            ax = fig.add_subplot(gs[0, 2 * j + k])
            for off, pos in ((-0.04, "pre"), (0.04, "post")):
                pts = [(v, a[what].get(fmt.format(pos=pos, v=v))) for v in xs]
                pts = [(v, c) for v, c in pts if c]
                if not pts:
                    continue
                ax.errorbar([v * (1 + off) for v, _ in pts], [100 * c["mean"] for _, c in pts],
                            yerr=[[100 * (c["mean"] - c["lo"]) for _, c in pts],
                                  [100 * (c["hi"] - c["mean"]) for _, c in pts]],
                            color=colors[pos], marker="o", capsize=3,
                            label=f"BN {pos} the nonlinearity" + (f" (chosen: x{a['chosen_lr'][pos]:g})"
                                                                  if what == "grid" else ""))
            ax.set_xscale("log")
            ax.set_xticks(xs, [f"x{v:g}" for v in xs])
            ax.minorticks_off()
            ax.set_xlabel(title)
            ax.set_ylabel("test accuracy (%)")
            ax.set_title(f"({chr(97 + 2 * j + k)}) {act}: " + ("score per LR" if what == "grid" else
                                                                "score per init scale"))
            legend(ax)
    P.caption(fig, result, [], "Mean over seeds with 95% intervals. Pre = linear/conv -> BN -> nonlinearity (the "
              "paper's), post = linear/conv -> nonlinearity -> BN. The sources give no controlled number to draw.")
    return fig


PILOT_CPU = (
    "pilot seeds 1000-1001 (2 seeds: the full product of 3 cells x sigmoid/ReLU x 5 points x 2 placements took 12 "
    "minutes on the shared cores), digits and MNIST-1D MLP and ResNet-8 at 1,000 / 1,500 / 1,500 steps. Validation "
    "picked x1 for every placement and activation but ResNet-8 sigmoid pre (x5); x30 diverged or stayed at chance "
    "in both placements of the MLP (BN's LR tolerance is C2's question; here it is the same for both). Pre - post "
    "at the chosen LR: digits sigmoid +0.4 points [-2.0, +2.7] (per-seed sd 0.26 points), ReLU +0.8 (sd 0.79); "
    "MNIST-1D sigmoid -7.7 [-15.1, -0.2] (sd 0.83: the pre-activation sigmoid MLP learns more slowly there, 60.0% "
    "vs 66.6% validation at 1,500 steps), ReLU +1.4 (sd 0.39); ResNet-8 ReLU -0.1 (sd 0.73); ResNet-8 sigmoid "
    "-1.1 [-126, +124] (bimodal: 46.6% and 86.6% mean at x1 across 2 seeds, sd 13.9 points). Design choices "
    "from it: the conv net runs ReLU only (its sigmoid cell is bimodal, would need ~1,500 seeds by the power "
    "table, and cost 80% of C17's CPU); budgets where the curves flatten: digits 600 steps (validation 97.7-99.1% "
    "at 500-600, the same at 1,000), ResNet-8 1,000 (97.5% at 800, 97.8% at 1,500), MNIST-1D's MLP keeps 1,500 "
    "(still rising: scored at the budget); the steps-to-target target is the lowest best validation accuracy of "
    "any seed (the mean-of-bests target left seeds short). n: the core tests' 80% power for a 1-point margin asks "
    "for 3-8 seeds (8: MNIST-1D sigmoid); capped at 5 by the suite's 30-minute budget (~110 s of CPU a seed for "
    "the five cells' 50 runs). The support tests read x30 and init x10, where runs diverge or not seed by seed: "
    "their sd (up to 16 points) would need hundreds of seeds, so they are reported, and a support test left "
    "unclear makes a verdict partly, not reproduced.")
DESIGNS = {"cpu": Design(
    data=("digits", "mnist1d", "mnist1d/resnet_cifar"),
    config={"trainer.max_steps": {"digits": 600, "mnist1d": 1500, "mnist1d/resnet_cifar": 1000},
            "trainer.eval_every": 100},
    n=5,
    pilot=PILOT_CPU,
    commit="fbc7a55")}

CLAIM = Claim("C17", "BN before the nonlinearity (the paper's) trains at least as well as after it",
              ("c17_position",), PAPER,
              f"Paper section {PAPER['section']}: \"{PAPER['quote']}\"; the other side: {PAPER['other_side']}",
              RULE, point, judge, designs=DESIGNS)
FIGURE = figure

PANELS = [TEST_ACC, SCORE]
