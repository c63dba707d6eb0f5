"""C8: Inference needs good population statistics."""
from __future__ import annotations

from typing import Optional

from bnrepro.report import plots as P, stats, style
from bnrepro.report.design import Design
from bnrepro.report.judging import (
    DIRECTION, Claim, Judged, Missing, Result, SAME, Untestable, arm_json, diff, prose)
from bnrepro.report.panels import TEST_ACC, bar
from bnrepro.report.rules import CORE, PRECONDITION, Rule, SUPPORT, Test
from bnrepro.report.runs import Run, neutral
from bnrepro.report.style import color, dot, legend, zoom
from bnrepro.report.properties import Property
from bnrepro.schema import Group

PAPER_C8 = {"samples": "1e3-1e4", "norm_batch": "32-128"}
STRESS = "ema_stress"
STANDARD = "standard"
# "EMA is measurably off": the stress setting's EMA statistics at least this many times further from the
# population statistics of the final weights than the standard setting's (summary ema_distance, loop.final_evals)
EMA_OFF = 2.0
RULE_C8 = Rule((
    Test("ema_off", PRECONDITION, f"in {STRESS} the EMA statistics are measurably off: further from the population "
         f"statistics of the final weights than in {STANDARD} (else the stress did not stress, and the claim is "
         "untestable here)",
         f"ema_distance({STRESS}) / ema_distance({STANDARD}), same seeds; ema_distance = per unit "
         "sqrt((mu_ema - mu_pop)^2 + (sd_ema - sd_pop)^2) / sd_pop, mean over units and BN layers",
         "greater", EMA_OFF, unit="ratio",
         why=f"a stated bar: {EMA_OFF:g}x the standard setting's distance, which is what a 1,000-example "
             "population estimate and an EMA of settled weights already disagree by (sampling noise, not stress)"),
    Test("precise_fixes", CORE, f"where EMA is known to be inaccurate (c8_setting={STRESS}), precise BN beats EMA",
         "acc(precise) - acc(EMA), same runs", "greater", 0.0, why=DIRECTION),
    Test("precise_safe", SUPPORT, "elsewhere precise BN loses nothing against EMA",
         "acc(precise) - acc(EMA) in the other settings", "greater", -SAME,
         why=f"non-inferiority margin {100 * SAME:g} point"),
), notes="Precise BN = population statistics over all recalibration batches combined (Wu & Johnson). Test-time "
         "batch statistics and the paper's Algorithm 2 estimator are reported per setting, not tested.")


def judge_c8(runs: list[Run]) -> Judged:
    cells: dict[str, dict[str, dict]] = {}
    stress: dict[str, dict] = {"ema": {}, "precise": {}}
    rest: dict[str, dict] = {"ema": {}, "precise": {}}
    keys = c8_keys(runs)
    for run in runs:
        if run.diverged:
            continue
        label_ = ", ".join(f"{k.split('.')[-1]}={run.get(k)}" for k in keys) or "all"
        for variant, acc in (run.summary.get("final_eval") or {}).items():
            if acc is None:
                continue
            cells.setdefault(label_, {}).setdefault(variant, {})[run.get("seed")] = float(acc)
            if variant in ("ema", "precise"):
                target = stress if run.get("claim_params.c8_setting") == STRESS else rest
                target[variant][(label_, run.get("seed"))] = float(acc)
    if not any(v for c in cells.values() for k, v in c.items() if k in ("ema", "precise")):
        raise Missing("final_eval lacks ema and precise accuracies")
    if not stress["ema"]:
        raise Untestable(f"no run is marked c8_setting={STRESS}: EMA is not known to be inaccurate anywhere")
    distance = {setting: {run.get("seed"): float(d) for run in runs if not run.diverged
                          and run.get("claim_params.c8_setting") == setting
                          and (d := (run.summary.get("ema_distance") or {}).get("mean")) is not None and d > 0}
                for setting in (STRESS, STANDARD)}
    measured = {"ema_off": stats.ratio(distance[STRESS], distance[STANDARD])
                if all(len(v) >= 2 for v in distance.values()) else None,
                "precise_fixes": diff(stress["precise"], stress["ema"]),
                "precise_safe": diff(rest["precise"], rest["ema"]) if rest["ema"] else None}
    numbers = {"cells": {c: {v: arm_json(x) for v, x in vs.items()} for c, vs in cells.items()},
               "stress_cells": sorted({c for c, _ in stress["ema"]}),
               "ema_distance": {k: arm_json(v, "plain") for k, v in distance.items() if v}}
    off = measured["ema_off"]
    return Judged(measured, numbers, (f"EMA distance {STRESS} / {STANDARD} {off.fmt()}; " if off else "")
                  + f"{STRESS}: precise - EMA {measured['precise_fixes'].fmt()}")


def c8_keys(runs: list[Run]) -> list[str]:
    """What the C8 sweep varied (c8_setting first): every setting is its own arm, judged separately."""
    keys = sorted({k for run in runs for k in run.config if not neutral(k)})
    varied = [k for k in keys if len({repr(run.get(k)) for run in runs}) > 1]
    return sorted(varied, key=lambda k: (k != "claim_params.c8_setting", k))


# --- the figure ---------------------------------------------------------------------------------------------------

def c8(result: Result):
    cells = result.numbers["cells"]
    stress = set(result.numbers.get("stress_cells", []))
    fig, gs = P.frame(result, 5 + 3.6 * len(cells), 6, (1, len(cells)), test_width=1.3)
    axes, pts = [], []
    variants = list(dict.fromkeys(v for vs in cells.values() for v in vs))
    for i, (setting, vs) in enumerate(cells.items()):
        ax = fig.add_subplot(gs[0, i], sharey=axes[0] if axes else None)
        for j, v in enumerate(variants):
            if v in vs:
                last = i == len(cells) - 1  # one legend entry per estimator
                pts.append(dot(ax, j, vs[v], col=color(v), label=f"{v} (n={vs[v]['n']})" if last else None))
        style.categories(ax, variants, 10)
        mark = "EMA known inaccurate" if setting in stress else "standard"
        dist = next((d for k, d in result.numbers.get("ema_distance", {}).items() if f"c8_setting={k}" in setting), None)
        if dist:  # how far the EMA was from the population statistics (the precondition's measure)
            mark += f"; EMA {dist['mean']:.3f} sd off"
        ax.set_title(f"({chr(97 + i)}) {style.wrap(setting, 40)}\n[{mark}]")
        axes.append(ax)
    zoom(axes[0], pts, label="final test accuracy (%)")
    for ax in axes[1:]:
        ax.set_ylabel("")
    legend(axes[-1])
    P.caption(fig, result, variants, "Panels share y. The paper's claim is qualitative (no number to draw).")
    return fig


class Params(Group):
    """The claim's own config keys (claim_params: in its config files), checked at the door."""
    c8_setting: Optional[str] = None             # the setting (configs/claims/c8_popstats/groups/c8/): standard or the
                                                 # one built so EMA is known to be inaccurate



PILOT_CPU = (
    "pilot seeds 1000-1002 (3 of 1000-1004: the machine was shared and slow; /tmp pilot, this commit's configs), "
    "3,000 steps, LR x1 in both settings. The old stress (LR x5, lambda 0.99) did not stress: EMA distance 0.012 "
    "vs standard 0.016 (digits, seed 1000), so ema_stress is now lambda 0.999 (torch momentum 0.001) at the same "
    "LR: training never reads the running statistics, so both settings train the same weights (precise BN "
    "scores are identical per seed) and the EMA alone differs. EMA distance (mean sd): digits standard 0.016-0.017, "
    "stress 0.18-0.23, ratio 12.8x [10.4, 15.7] (sd of log ratio 0.08: n=3 for a factor 2 above the 2x bar); "
    "MNIST-1D standard 0.043-0.057, stress 0.24-0.26, 5.2x [3.8, 7.3] (sd 0.13, n=3). The precondition holds on "
    "both. Core precise - EMA in the stress: digits -0.3 points [-2.4, +1.8], sd 0.85 (n=8 for 1 point: on digits "
    "an EMA 0.2 sd off costs the accuracy little); MNIST-1D +7.5 [+1.4, +13.6], sd 2.5 (n=3 for the observed "
    "effect, 50 for 1 point). precise_safe (standard): digits +0.1 [-0.3, +0.5], MNIST-1D +0.4 [-2.5, +3.3], sd "
    "1.15 (n=13). n capped at 5 seeds per arm by the suite's 30-minute budget on 2 cores (both datasets). Cost: "
    "unchanged (2 settings x 3,000 steps x 5 seeds x 2 datasets, ~60 run-seconds).")
# The design, frozen before the confirmation seeds ran (bnrepro/report/design.py): the report judges only
# confirmation runs of this config, and names the commit.
DESIGNS = {"cpu": Design(
    data=('digits', 'mnist1d'),
    config={"trainer.max_steps": 3000, "trainer.eval_every": 500, "optim.lr_mult": 1},
    n=5,
    pilot=PILOT_CPU,
    commit="902df75")}


CLAIM = Claim(
    "C8", "Inference needs good population statistics", ("c8_popstats",), PAPER_C8,
    prose(f"""Rethinking Batch in BatchNorm: EMA statistics can be inaccurate; precise BN (recomputed over
    ~{PAPER_C8['samples']} training samples) is better and stabler; normalization batches of
    {PAPER_C8['norm_batch']} work best; tiny ones cause train/test inconsistency"""), RULE_C8,
    lambda run: tuple(run.get(k) for k in sorted(k for k in run.config if not neutral(k))), judge_c8, designs=DESIGNS)
FIGURE = c8


# --- the W&B Report's panels (bnrepro/report/panels.py) -----------------------------------------------------------

PANELS = [bar("final test accuracy by inference statistics",
              ["final_eval.ema", "final_eval.precise", "final_eval.precise_alg2", "final_eval.batch"]), TEST_ACC]


# --- BN's property this claim gives the scorecard (bnrepro/report/properties.py, bnrepro/scorecard/) -----------

PROPERTY = Property(
    "no train/test discrepancy (accurate population statistics)", "no train/test gap",
    Test("precise_safe", CORE, "in standard training the running (EMA) statistics the net is evaluated with lose "
         "less than 1 point against precise population statistics of its final weights",
         "acc(precise) - acc(EMA), standard setting", "less", SAME,
         why=f"the rules' 'no loss' margin ({100 * SAME:g} point, SAME), fixed before any scorecard run; a norm "
             "without batch statistics needs no population statistics: not applicable"),
    bn="ghost_bn", preconditions=(), batch_stats=True)
# The claim's own tests are about precise BN under a stress; the property reads its standard setting only (the
# stress is C8's precondition, not the property's), so no precondition gates it.
