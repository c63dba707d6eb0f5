"""C1: BN trains in far fewer steps."""
from __future__ import annotations

from typing import Optional

import numpy as np

from bnrepro.report import plots as P, stats, style
from bnrepro.report.design import Design
from bnrepro.report.judging import (
    DIRECTION_RATIO, Claim, FAR, Judged, Result, acc_series, arm_json, by_seed, ladder_steps, need, pct, prose,
    ratio_steps, score)

from bnrepro.report.panels import SCORE, TEST_ACC, line
from bnrepro.report.rules import CORE, Rule, SUPPORT, Test
from bnrepro.report.runs import Run
from bnrepro.report.style import color, dot, legend, paper, zoom
from bnrepro.schema import Group

PAPER_C1 = {"steps": {"Inception": 31.0e6, "BN-Baseline": 13.3e6, "BN-x5": 2.1e6, "BN-x30": 2.7e6},
            "max_acc": {"Inception": 72.2, "BN-Baseline": 72.7, "BN-x5": 73.0, "BN-x30": 74.8, "BN-x5-Sigmoid": 69.8},
            "target": 72.2}
PAPER_C1["speedup"] = {v: PAPER_C1["steps"]["Inception"] / s for v, s in PAPER_C1["steps"].items()}
LADDER = ("Inception", "BN-Baseline", "BN-x5", "BN-x30", "BN-x5-Sigmoid")
RULE_C1 = Rule((
    Test("faster", CORE, "BN-x5 reaches the target in fewer steps than Inception",
         "BN-x5's speed-up (Inception's steps / BN-x5's)", "greater", 1.0, unit="ratio", why=DIRECTION_RATIO),
    Test("far", SUPPORT, "far fewer steps", "BN-x5's speed-up", "greater", FAR, unit="ratio",
         why=f"the paper's 14.8x comes from a 31e6-step baseline; {FAR:g}x is the stated bar here, reported beside it"),
    Test("ladder_bn", SUPPORT, "BN-Baseline is faster than Inception (the paper's order)",
         "Inception's steps / BN-Baseline's", "greater", 1.0, unit="ratio", why=DIRECTION_RATIO),
    Test("ladder_lr", SUPPORT, "BN-x5 is faster than BN-Baseline (the paper's order)",
         "BN-Baseline's steps / BN-x5's", "greater", 1.0, unit="ratio", why=DIRECTION_RATIO),
    Test("sigmoid_never", SUPPORT, "no arm contradicts the paper: BN-x5-Sigmoid never reaches the target",
         "the fraction of BN-x5-Sigmoid seeds that reach it", "less", 0.5, unit="plain",
         why="the paper's BN-x5-Sigmoid peaked at 69.8% < 72.2%; reaching the target in most seeds is flagged"),
), notes="Target = the lowest best validation accuracy among the Inception seeds (the paper's target is "
         "Inception's best, 72.2%); steps to it read the validation series; ratios are paired by seed on the log "
         "scale; an arm that reaches the target in only some seeds has no speed-up (unclear).")


def judge_c1(runs: list[Run]) -> Judged:
    arms = {v: rs for v in LADDER if (rs := [r for r in runs if r.get("claim_params.variant") == v])}
    for v in ("Inception", "BN-Baseline", "BN-x5"):
        need(arms, v, f"variant={v}")
    target, steps = ladder_steps(arms, "Inception")
    base = steps["Inception"]
    speedups = {v: ratio_steps(base, steps[v]) for v in arms if v != "Inception"}
    ladder = {v: {"steps": arm_json({s: x for s, x in steps[v].items() if x is not None}, "plain"),
                  "reached": sum(x is not None for x in steps[v].values()), "n": len(steps[v]),
                  "score": arm_json(by_seed(arms[v], score)), "diverged": sum(r.diverged for r in arms[v]),
                  "speedup": speedups[v].to_json() if speedups.get(v) else None,
                  "paper_speedup": PAPER_C1["speedup"].get(v), "paper_max_acc": PAPER_C1["max_acc"][v]}
              for v in arms}
    sig = steps.get("BN-x5-Sigmoid")
    measured = {"faster": speedups["BN-x5"], "far": speedups["BN-x5"],
                "ladder_bn": speedups["BN-Baseline"], "ladder_lr": ratio_steps(steps["BN-Baseline"], steps["BN-x5"]),
                "sigmoid_never": stats.mean_ci([float(x is not None) for x in sig.values()], "plain") if sig else None}
    # the paper's baseline ran to its plateau; one still improving at its last evaluation caps every speed-up
    capped = sum(1 for r in arms["Inception"] if len(acc_series(r)[2]) and int(np.argmax(acc_series(r)[2])) ==
                 len(acc_series(r)[2]) - 1)
    x5 = speedups["BN-x5"]
    x5_text = ("not measured (not every seed reached the target)" if x5 is None
               else "never reached the target" if x5.test == "not reached" else x5.fmt())
    return Judged(measured, {"target": target, "split": acc_series(arms["Inception"][0])[0], "ladder": ladder,
                             "baseline_still_improving": capped},
                  f"target {pct(target)}; BN-x5 speed-up {x5_text} (paper {PAPER_C1['speedup']['BN-x5']:.1f}x); "
                  + ", ".join(f"{v} reached {row['reached']}/{row['n']}" for v, row in ladder.items())
                  + (f"; {capped}/{len(arms['Inception'])} Inception seeds were still improving at their last "
                     "evaluation, so the budget caps the speed-up" if capped else ""))


# the paper's value of a tested quantity, drawn on the tests panel
TEST_MARKS = {"far": (PAPER_C1["speedup"]["BN-x5"], f"paper: BN-x5 {PAPER_C1['speedup']['BN-x5']:.1f}x (ImageNet)")}


# --- the figure ---------------------------------------------------------------------------------------------------

def c1(result: Result):
    n = result.numbers
    ladder = n["ladder"]
    names = list(ladder)
    fig, gs = P.frame(result, 17, 6.2, (1, 3), ratios=[1.2, 1, 0.9], test_width=1.1, marks=TEST_MARKS)
    a = fig.add_subplot(gs[0, 0])
    labelled = False
    for i, v in enumerate(names):
        row = ladder[v]
        if row["speedup"]:
            dot(a, i, row["speedup"], 1.0, col=color(v), offset=-0.12, label=None if labelled else f"ours ({n.get('data', 'digits')})")
            labelled = True
        elif v == "Inception":
            a.plot([i - 0.12], [1.0], "o", color=color(v))
        if not row["reached"]:
            gone = "never\nreached" + ("\n(paper: never)" if v not in PAPER_C1["steps"] else "")
        elif not row["speedup"] and v != "Inception":
            gone = "not measured:\nsome seeds\nnever reached"
        else:
            gone = None
        if gone:
            a.annotate(gone, (i, 1.0), xytext=(0, 12), textcoords="offset points", ha="center",
                       fontsize=style.FONT["tick"], color=color(v))
        if row.get("paper_speedup") or v == "Inception":
            paper(a, i + 0.12, row.get("paper_speedup") or 1.0,
                  label=f"paper (ImageNet, steps to {PAPER_C1['target']}%)" if v == "Inception" else "_")
    a.axhline(1.0, color="black", lw=0.8)
    a.set_yscale("log")
    a.autoscale_view()
    style.ratio_axis(a.yaxis)
    style.categories(a, [f"{v}\n{ladder[v]['reached']}/{ladder[v]['n']} reached" for v in names], 13)
    a.set_ylabel("speed-up vs Inception (x, log scale)\nsteps(Inception) / steps(arm)")
    a.set_title(f"(a) speed-up to the target {100 * n['target']:.1f}% ({n['split']} accuracy)")
    legend(a)
    b = fig.add_subplot(gs[0, 1])
    P.arm_dots(b, {v: ladder[v]["score"] for v in names}, ylabel="ours: score, test accuracy (%)", width=13)
    b.set_title(f"(b) ours: score ({n.get('data', 'digits')})")
    p = fig.add_subplot(gs[0, 2])
    pts = [(i, PAPER_C1["max_acc"][v], PAPER_C1["max_acc"][v], PAPER_C1["max_acc"][v]) for i, v in enumerate(names)
           if v in PAPER_C1["max_acc"]]
    for i, (x, y, _, _) in enumerate(pts):
        paper(p, x, y, label="paper: max top-1 accuracy (ImageNet)" if i == 0 else "_")
    style.categories(p, names, 13)
    zoom(p, pts, label="paper: max accuracy (%)")
    p.set_title("(c) paper: max accuracy (ImageNet)")
    legend(p)
    P.caption(fig, result, names, "Speed-ups are paired by seed on the log scale; (b) and (c) are different data "
              "sets, so each has its own y range.")
    return fig


class Params(Group):
    """The claim's own config keys (claim_params: in its config files), checked at the door."""
    variant: Optional[str] = None                # the ladder rung (configs/claims/c1_speed/groups/ladder/)
    ladder_weight_decay: Optional[dict[str, float]] = None  # per scale: the weight decay of the full and reduced rungs



PILOT_CPU = (
    "exploration runs, seeds 0-4 (results/cpu at dd16a63, `python -m bnrepro.report.power runs/cpu`): faster 3.20x "
    "[2.97, 3.43], sd of log 0.058 (n=2 detects a factor 2); ladder sd 0.17-0.20 (n=3); sigmoid_never 5/5 seeds "
    "reach the target (the target is the best of an Inception still improving at 200 steps: a known flaw of this "
    "design, not yet redesigned). n capped at 5 seeds per arm by the suite's 30-minute budget on 2 cores (both "
    "datasets).")
# The design, frozen before the confirmation seeds ran (bnrepro/report/design.py): the report judges only
# confirmation runs of this config, and names the commit.
DESIGNS = {"cpu": Design(
    data=('digits',),
    config={"trainer.max_steps": 200, "trainer.eval_every": 20, "trainer.batch_size": 32, "optim.lr": 0.01},
    n=5,
    pilot=PILOT_CPU)}


CLAIM = Claim(
    "C1", "BN trains in far fewer steps", ("c1_speed",), PAPER_C1,
    prose(f"""ImageNet steps to {PAPER_C1['target']}% (Inception's best): """ + ", ".join(
        f"{v} {s / 1e6:.1f}e6 ({PAPER_C1['speedup'][v]:.1f}x)" for v, s in PAPER_C1["steps"].items())
       + "; max accuracy " + ", ".join(f"{v} {a}%" for v, a in PAPER_C1["max_acc"].items())
       + " (BN-x5-Sigmoid never reaches the target)"), RULE_C1, ("claim_params.variant",), judge_c1, designs=DESIGNS)
FIGURE = c1


# --- the W&B Report's panels (bnrepro/report/panels.py) -----------------------------------------------------------

PANELS = [line("validation accuracy vs step (steps to target read here)", ["val_acc"]), TEST_ACC, SCORE]
