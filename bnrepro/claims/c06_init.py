"""C6: BN reduces sensitivity to initialization."""
from __future__ import annotations

from bnrepro.report import plots as P
from bnrepro.report.design import Design
from bnrepro.report.judging import (
    DIRECTION, Claim, Judged, MIN_GAIN, Missing, Result, STABLE_FACTOR, arm_json, arms_of, by_seed, combo, diff,
    label, pick_by_val, score)

from bnrepro.report.panels import SCORE, TEST_ACC
from bnrepro.report.rules import CORE, PRECONDITION, Rule, SUPPORT, Test
from bnrepro.report.runs import Run
from bnrepro.report.style import legend, zoom
from bnrepro.report.properties import Property

INIT_KEYS = ("model.init_std", "model.init_scale")  # the MLP's init std; the conv nets' multiplier of Kaiming init
RULE_C6 = Rule((
    Test("init_matters", PRECONDITION, "initialization matters without BN",
         "score(no BN, best init) - score(no BN, worst init), both chosen on validation", "greater", MIN_GAIN,
         why=f"at least {100 * MIN_GAIN:g} point, else there is no sensitivity to reduce"),
    Test("less_sensitive", CORE, "BN's accuracy varies less over inits than no-BN's",
         "spread(no BN) - spread(BN), spread = max - min score over inits within a seed", "greater", 0.0,
         why=DIRECTION),
    Test("far", SUPPORT, "BN's spread is at most half of no-BN's",
         f"{STABLE_FACTOR:g} x spread(no BN) - spread(BN)", "greater", 0.0, why=DIRECTION),
))


def init_key(runs: list[Run]) -> str:
    """The init key the C6 sweep varied (the MLP and the conv families name it differently)."""
    varied = [k for k in INIT_KEYS if len({repr(run.get(k)) for run in runs}) > 1]
    return varied[0] if varied else INIT_KEYS[0]


def judge_c6(runs: list[Run]) -> Judged:
    key = init_key(runs)
    arms = arms_of(runs, ("model.norm", key))
    s = {k: by_seed(rs, score) for k, rs in arms.items()}
    spread = {}
    for norm in ("bn", "none"):
        mine = {k: v for k, v in s.items() if k[0] == norm}
        if len(mine) < 2:
            raise Missing(f"fewer than two init scales for model.norm={norm}")
        seeds = set.intersection(*(set(v) for v in mine.values()))
        spread[norm] = {sd: max(v[sd] for v in mine.values()) - min(v[sd] for v in mine.values()) for sd in seeds}
    none_arms = {k: rs for k, rs in arms.items() if k[0] == "none"}
    best = pick_by_val(none_arms, "no-BN's best init")
    worst = pick_by_val(none_arms, "no-BN's worst init", worst=True)
    measured = {"init_matters": diff(s[best], s[worst]), "less_sensitive": diff(spread["none"], spread["bn"]),
                "far": diff(combo(spread["none"], spread["none"], STABLE_FACTOR, 0.0), spread["bn"])}
    numbers = {"arms": {f"{label(n)}, {key.split('.')[-1]} {v:g}": arm_json(x) for (n, v), x in s.items()},
               "spread": {label(n): arm_json(v, "points") for n, v in spread.items()}, "init_key": key}
    return Judged(measured, numbers, f"spread over inits: BN {numbers['spread']['BN']['text']}, no BN "
                                     f"{numbers['spread']['no BN']['text']}")


# --- the figure ---------------------------------------------------------------------------------------------------

def c6(result: Result):
    n = result.numbers
    key = n.get("init_key", "model.init_std").split(".")[-1]
    fig, gs = P.frame(result, 16, 5.8, (1, 2), test_width=1.0)
    a, b = fig.add_subplot(gs[0, 0]), fig.add_subplot(gs[0, 1])
    series = P.by_norm(n["arms"], lambda k: P.parse_after(k, key))
    pts = P.lines(a, series, dodge=1.08)
    P.log_x(a, [x for v in series.values() for x, _ in v], f"{key} (log scale)")
    zoom(a, pts, label="score, test accuracy (%)")
    a.set_title("(a) score per initialization scale")
    legend(a)
    P.arm_dots(b, n["spread"], 100.0, " points", "spread over inits (points)\nmax - min score within a seed",
               floor=0.0)
    b.set_title("(b) spread of the score over inits")
    P.caption(fig, result, ["BN", "no BN"], "The paper gives no number (section 3.3).")
    return fig


PILOT_CPU = (
    "exploration runs, seeds 0-4 (results/cpu at dd16a63, `python -m bnrepro.report.power runs/cpu`), digits only: "
    "less_sensitive +24.7 points, sd 2.6 (n=55 for a 1-point effect, n<5 at the observed one); MNIST-1D exploration "
    "(issue 9): -1.2 [-4.3, +1.9]. n capped at 5 seeds per arm by the suite's 30-minute budget on 2 cores (both "
    "datasets).")
# The design, frozen before the confirmation seeds ran (bnrepro/report/design.py): the report judges only
# confirmation runs of this config, and names the commit.
DESIGNS = {"cpu": Design(
    data=('digits', 'mnist1d'),
    config={"trainer.max_steps": 3000, "trainer.eval_every": 250},
    n=5,
    pilot=PILOT_CPU,
    commit="ce1ae7e")}


CLAIM = Claim(
    "C6", "BN reduces sensitivity to initialization", ("c6_init",), {},
    "section 3.3: with BN, back-propagation through a layer is unaffected by the scale of its parameters, so "
    "training is less sensitive to initialization (no number given)", RULE_C6,
    lambda run: (run.get("model.norm"), run.get("model.init_std"), run.get("model.init_scale")), judge_c6, designs=DESIGNS)
FIGURE = c6


# --- the W&B Report's panels (bnrepro/report/panels.py) -----------------------------------------------------------

PANELS = [TEST_ACC, SCORE]


# --- BN's property this claim gives the scorecard (bnrepro/report/properties.py, bnrepro/scorecard/) -----------

PROPERTY = Property(
    "reduces sensitivity to initialization", "init-robust", "less_sensitive",
    reference=("model.norm=bn,none",))
