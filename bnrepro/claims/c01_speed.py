"""C1: BN trains in far fewer steps."""
from __future__ import annotations

from typing import Optional

from bnrepro.report import plots as P, stats, style
from bnrepro.report.design import Design
from bnrepro.report.judging import (
    DIRECTION_RATIO, MIN_GAIN, Claim, FAR, Judged, Missing, Result, acc_series, arm_json, by_seed, need, pct, prose,
    ratio_steps, score, steps_to)

from bnrepro.report.panels import SCORE, TEST_ACC, line
from bnrepro.report.rules import CORE, PRECONDITION, Rule, SUPPORT, Test
from bnrepro.report.runs import Run
from bnrepro.report.style import color, dot, legend, paper, zoom
from bnrepro.schema import Group

PAPER_C1 = {"steps": {"Inception": 31.0e6, "BN-Baseline": 13.3e6, "BN-x5": 2.1e6, "BN-x30": 2.7e6},
            "max_acc": {"Inception": 72.2, "BN-Baseline": 72.7, "BN-x5": 73.0, "BN-x30": 74.8, "BN-x5-Sigmoid": 69.8},
            "target": 72.2}
PAPER_C1["speedup"] = {v: PAPER_C1["steps"]["Inception"] / s for v, s in PAPER_C1["steps"].items()}
LADDER = ("Inception", "BN-Baseline", "BN-x5", "BN-x30", "BN-x5-Sigmoid")
PLATEAU = 0.25  # Inception's plateau: its evaluations in the last quarter of its run


def windows(run: Run) -> tuple[float, float] | None:
    """(mean validation accuracy over the last quarter of the run's steps, over the quarter before): the plateau
    level and the level it rose from. None for a diverged run or one without such evaluations."""
    if run.diverged:
        return None
    _, steps, values = acc_series(run)
    if not len(steps):
        return None
    end = float(steps.max())
    last = values[steps > (1 - PLATEAU) * end]
    before = values[(steps > (1 - 2 * PLATEAU) * end) & (steps <= (1 - PLATEAU) * end)]
    return (float(last.mean()), float(before.mean())) if len(last) and len(before) else None


RULE_C1 = Rule((
    Test("plateau", PRECONDITION, "Inception was trained to its plateau (the paper's target is its best, reached at "
         "the end of a converged run)",
         "Inception's mean validation accuracy over the last quarter of its run minus over the quarter before",
         "less", MIN_GAIN,
         why=f"{100 * MIN_GAIN:g} point (MIN_GAIN, the suite's smallest gain): a baseline still gaining a point per "
         "quarter of its run caps every speed-up (issue 21: at 200 steps it gained in 5/5 seeds)"),
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
), notes="Target = Inception's plateau accuracy: its mean validation accuracy over the last quarter of its "
         "run, the lowest over its seeds (the paper's target is Inception's best, 72.2%, at the end of a converged "
         "run on a 50,000-image validation set; on 216 images one evaluation's noise is ~1 point, so the best of many "
         "evaluations would sit above the plateau); steps to it read the validation series; ratios are paired by seed on the log "
         "scale; an arm that reaches the target in only some seeds has no speed-up (unclear).")


def judge_c1(runs: list[Run]) -> Judged:
    arms = {v: rs for v in LADDER if (rs := [r for r in runs if r.get("claim_params.variant") == v])}
    for v in ("Inception", "BN-Baseline", "BN-x5"):
        need(arms, v, f"variant={v}")
    levels = {r.get("seed"): w for r in arms["Inception"] if (w := windows(r))}
    if not levels:
        raise Missing("no finished Inception run with validation evaluations over its last half")
    target = min(w[0] for w in levels.values())
    steps = {name: {r.get("seed"): steps_to(r, target) for r in rs} for name, rs in arms.items()}
    base = steps["Inception"]
    speedups = {v: ratio_steps(base, steps[v]) for v in arms if v != "Inception"}
    ladder = {v: {"steps": arm_json({s: x for s, x in steps[v].items() if x is not None}, "plain"),
                  "reached": sum(x is not None for x in steps[v].values()), "n": len(steps[v]),
                  "score": arm_json(by_seed(arms[v], score)), "diverged": sum(r.diverged for r in arms[v]),
                  "speedup": speedups[v].to_json() if speedups.get(v) else None,
                  "paper_speedup": PAPER_C1["speedup"].get(v), "paper_max_acc": PAPER_C1["max_acc"][v]}
              for v in arms}
    sig = steps.get("BN-x5-Sigmoid")
    measured = {"plateau": stats.mean_ci([a - b for a, b in levels.values()], "points"),
                "faster": speedups["BN-x5"], "far": speedups["BN-x5"],
                "ladder_bn": speedups["BN-Baseline"], "ladder_lr": ratio_steps(steps["BN-Baseline"], steps["BN-x5"]),
                "sigmoid_never": stats.mean_ci([float(x is not None) for x in sig.values()], "plain") if sig else None}
    x5 = speedups["BN-x5"]
    x5_text = ("not measured (not every seed reached the target)" if x5 is None
               else "never reached the target" if x5.test == "not reached" else x5.fmt())
    gain = measured["plateau"]
    return Judged(measured, {"target": target, "split": acc_series(arms["Inception"][0])[0], "ladder": ladder,
                             "inception_plateau": {str(k): {"last_quarter": a, "quarter_before": b}
                                                   for k, (a, b) in levels.items()}},
                  f"target {pct(target)} (Inception's plateau; its last quarter gained {gain.fmt()} on the quarter "
                  f"before); BN-x5 speed-up {x5_text} (paper {PAPER_C1['speedup']['BN-x5']:.1f}x); "
                  + ", ".join(f"{v} reached {row['reached']}/{row['n']}" for v, row in ladder.items()))


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
    inception_max_steps: Optional[int] = None    # per scale: Inception's budget (to its plateau: the target)
    baseline_max_steps: Optional[int] = None     # per scale: BN-Baseline's budget



PILOT_CPU = (
    "exploration runs, seeds 0-4 (results/cpu at dd16a63): faster 3.20x [2.97, 3.43], sd of log 0.058; ladder sd "
    "0.17-0.20; Inception still improving at 200 steps in 5/5 seeds (val 0.85-0.94 at its last evaluation). Pilot "
    "seeds 1000-1001 (the session's budget allowed two; seed 1002 did not finish), Inception at 800 steps with the "
    "absolute decay period of 10 steps: validation rises to ~0.97 by 300-400 steps; plateau level (mean over the last "
    "quarter) 98.4% and 98.0%, last quarter - quarter before +0.3 and +0.2 points (the `plateau` precondition's "
    "bound is 1 point); it first reaches 98.0% at steps 480 and 340. BN-x5 and BN-Baseline at this design: not "
    "piloted on seeds 1000+ in this session (exploration: BN-x5 0.94-0.98 by 60-80 steps, BN-Baseline 0.95-0.995 at "
    "200 steps). Cost (exploration timing, ~40 ms a step + ~3 s a run): Inception 5 x 35 s, BN-Baseline 5 x 15 s, "
    "the three 4.2.1 rungs 15 x 8 s: ~370 s against 295 s (1.25x). n 5 seeds per arm (the suite's budget).")
# The design, frozen before the confirmation seeds ran (bnrepro/report/design.py): the report judges only
# confirmation runs of this config, and names the commit.
DESIGNS = {"cpu": Design(
    data=('digits',),
    config={"claim_params.inception_max_steps": 800, "claim_params.baseline_max_steps": 300,
            "schedule.decay_every_steps": 10, "trainer.eval_every": 20, "trainer.batch_size": 32, "optim.lr": 0.01},
    n=5,
    pilot=PILOT_CPU,
    commit="ce1ae7e")}


CLAIM = Claim(
    "C1", "BN trains in far fewer steps", ("c1_speed",), PAPER_C1,
    prose(f"""ImageNet steps to {PAPER_C1['target']}% (Inception's best): """ + ", ".join(
        f"{v} {s / 1e6:.1f}e6 ({PAPER_C1['speedup'][v]:.1f}x)" for v, s in PAPER_C1["steps"].items())
       + "; max accuracy " + ", ".join(f"{v} {a}%" for v, a in PAPER_C1["max_acc"].items())
       + " (BN-x5-Sigmoid never reaches the target)"), RULE_C1, ("claim_params.variant",), judge_c1, designs=DESIGNS)
FIGURE = c1


# --- the W&B Report's panels (bnrepro/report/panels.py) -----------------------------------------------------------

PANELS = [line("validation accuracy vs step (steps to target read here)", ["val_acc"]), TEST_ACC, SCORE]
