"""C11: BN smooths the loss landscape (Santurkar et al. 2018, "How Does Batch Normalization Help Optimization?",
section 3.1, Fig. 4). Experiment c11_smoothness: BN vs no BN at one LR; the `landscape` probe
(bnrepro/probes/landscape.py) measures, at every evaluation step, along the gradient direction at step sizes
eta = LR x {0.5, 1, 2, 4}: the loss range, the largest gradient change and the effective beta-smoothness.

The paper gives curves only (VGG on CIFAR-10, with and without BN, at the same LR, over training): all three
lie clearly lower with BN at every point shown; its text states no number for them, so our figure states its
claim beside our measurements instead of drawing digitized values.

The rule (the window added by issue 21, before the confirmation runs):
- the pre-convergence window: per seed, the probe steps before the no-BN net's training loss first falls to
  LOSS_FIT = ln(10)/10 = 0.23 (90% of the chance-level loss gone), the BN run of the same seed read at the same
  steps. The design before averaged over every probe step, 6 of digits' 8 after the nets had fitted (training
  loss ~1e-3 to 1e-4), where the measures are those of a converged net and scatter over a factor of 10 across
  seeds; the paper's claim is about the landscape the optimizer crosses while it trains;
- per run, each measure is summarized by its geometric mean over the window's probe steps (the measures span
  orders of magnitude over training; the log scale weighs every probe step alike);
- BN / no BN: the geometric-mean ratio over seeds with a paired t interval on the log ratios (seeds paired:
  same init draw and batch order); "smaller" holds when the interval lies below 1, fails above 1;
- "clearly smaller" (support): at most half, the factor the rules call far (C4's STABLE_FACTOR);
- precondition: the no-BN net trains at this LR (mean score above 50%, far above the 10% chance of both
  datasets): a net stuck on a plateau, or diverged, has a landscape that says nothing about BN.

Santurkar et al.'s range (issue 21 asks for it): their Fig. 4 draws the three measures over VGG's training on
CIFAR-10, from the start; the step range on its x axis and the fraction of their training it covers could NOT be
retrieved here (the paper's text and figures were not readable from this machine: only its abstract and
introduction, and third-party summaries, which give no step numbers), so the window is not matched to theirs;
it is defined by our own no-BN net's training loss, which transfers to any dataset and scale.
"""
from __future__ import annotations

import math

import numpy as np

from bnrepro.report import plots as P
from bnrepro.report import stats
from bnrepro.report.design import Design
from bnrepro.report.judging import (
    DIRECTION_RATIO, STABLE_FACTOR, Claim, Judged, Result, arm_json, arms_of, by_seed, need, score)
from bnrepro.report.panels import TEST_ACC, line
from bnrepro.report.rules import CORE, PRECONDITION, SUPPORT, Rule, Test
from bnrepro.report.runs import Run

MEASURES = {  # metrics key -> (test key, what it is, the paper's panel)
    "landscape_loss_range": ("loss_range", "loss range along -g", "Fig. 4(a) loss landscape"),
    "landscape_grad_change": ("grad_change", "gradient change along -g", "Fig. 4(b) gradient predictiveness"),
    "landscape_beta": ("beta", "effective beta-smoothness", "Fig. 4(c) effective beta-smoothness"),
}
TRAINS_AT = 0.5  # the no-BN net "trains" here: mean score above 50% (digits' chance is 10%)
# The pre-convergence window, fixed before the confirmation runs (issue 21): the probe steps before the no-BN
# net's training loss first falls to a tenth of the chance-level loss ln(10) = 2.30 (90% of the initial loss
# removed), per seed, BN read at the same steps. Chosen on pilot seeds 1000-1004 (PILOT_CPU): on digits the no-BN
# net's mean training loss is 0.33 at step 300 and 0.15 at 400, so the window ends at ~300, before the fitted
# phase (loss ~1e-3 to 1e-4) where the ratios scatter over a factor of 10 either way; on MNIST-1D the no-BN net
# never gets there in 2,000 steps (1.43 at the end), so its window is the whole run.
LOSS_FIT = 0.1 * math.log(10)
MIN_STEPS = 3  # a window with fewer probe steps is not measured (the seed drops out of the pairing)
# max_eta: the cap in Fig. 4's caption as we recall it (not verified: the paper's text was not retrievable here)
PAPER = {"net": "VGG", "data": "CIFAR-10", "figure": "Fig. 4", "max_eta": 0.4, "lr": 0.1,
         "numbers": None,  # curves only: no value of the three measures is stated in the text
         "finding": "all three measures clearly smaller with BN than without, at the same LR, over training"}

RULE = Rule((
    Test("no_bn_trains", PRECONDITION, "the no-BN net trains at this LR (else its landscape is a plateau's)",
         "score(no BN)", "greater", TRAINS_AT, unit="plain",
         why="digits' chance is 10%; a stalled or diverged net says nothing about BN's landscape"),
    *(Test(key, CORE, f"BN's {what} is smaller than no-BN's", f"the ratio BN / no BN of the {what}, "
           "pre-convergence window", "less", 1.0, unit="ratio", why=DIRECTION_RATIO)
      for key, what, _ in MEASURES.values()),
    *(Test(f"{key}_half", SUPPORT, f"clearly smaller: BN's {what} at most half of no-BN's",
           f"the ratio BN / no BN of the {what}, pre-convergence window", "less", STABLE_FACTOR, unit="ratio",
           why=f"the paper's curves differ clearly at every point; {STABLE_FACTOR:g}x is the factor the rules call "
               "far (C4)")
      for key, what, _ in MEASURES.values()),
), notes="At every evaluation step, on the step's training batch in training mode: g at the current weights w, then "
         "the loss and gradient at w - eta g for eta = LR x 0.5, 1, 2, 4; loss range = max - min of the loss over "
         "w and those points, gradient change = max ||grad(w - eta g) - g||, effective beta-smoothness = "
         "max ||grad(w - eta g) - g|| / ||eta g|| (Santurkar et al. cap eta at 0.4 = 4x "
         "their LR 0.1). Per run each measure is the geometric mean over the probe steps of the seed's pre-convergence "
         f"window (those before the no-BN run's training loss first falls to {LOSS_FIT:.2f} = ln(10)/10; at least "
         f"{MIN_STEPS} steps, else the seed is not measured); both arms run the same LR and seeds.")


def window(run: Run) -> set[float]:
    """The pre-convergence window of a no-BN run: its probe steps before its training loss first falls to
    LOSS_FIT or below (every probe step if it never does). The BN run of the same seed is read at the same steps,
    so both arms are compared where the no-BN net is still learning."""
    steps, loss = run.series("train_loss")
    fitted = [float(s) for s, v in zip(steps, loss) if np.isfinite(v) and v <= LOSS_FIT]
    end = min(fitted) if fitted else math.inf
    probed, _ = run.series(next(iter(MEASURES)))
    return {float(s) for s in probed if s < end}


def windows(none: list[Run]) -> dict:
    """{seed: the window's probe steps} from each no-BN run."""
    return {run.get("seed"): window(run) for run in none if not run.diverged}


def geo_mean(key: str, steps_by_seed: dict | None = None):
    """The run's geometric mean of a metrics series over its probe steps in the seed's window (all probe steps
    when `steps_by_seed` is None; finite, positive values); None with fewer than MIN_STEPS of them."""
    def value(run: Run) -> float | None:
        if run.diverged:
            return None
        steps, values = run.series(key)
        if steps_by_seed is not None:
            keep = steps_by_seed.get(run.get("seed"), set())
            mask = np.array([float(s) in keep for s in steps], dtype=bool)
            values = values[mask] if len(values) else values
        values = values[np.isfinite(values) & (values > 0)]
        need_n = MIN_STEPS if steps_by_seed is not None else 1
        return float(np.exp(np.mean(np.log(values)))) if len(values) >= need_n else None
    return value


def log_curves(runs: list[Run], key: str) -> dict:
    """{"steps", "mean", "lo", "hi"} per probe step: the geometric mean over runs with its 95% interval (a t
    interval on the logs), the scale the measures live on."""
    by_step: dict[float, list[float]] = {}
    for run in runs:
        for step, value in zip(*run.series(key)):
            if value > 0:
                by_step.setdefault(float(step), []).append(math.log(value))
    steps = sorted(by_step)
    ivs = [stats.mean_ci(by_step[s], "plain") for s in steps]
    fin = lambda x, m: math.exp(x if math.isfinite(x) else m)
    return {"steps": steps, "mean": [math.exp(iv.mean) for iv in ivs], "lo": [fin(iv.lo, iv.mean) for iv in ivs],
            "hi": [fin(iv.hi, iv.mean) for iv in ivs]}


def ratio_by_step(bn: list[Run], none: list[Run], key: str) -> dict:
    """BN / no BN at each probe step, paired by seed (geometric mean ratio, t interval on the log ratios): where
    along training the two arms' landscapes differ. Described, not tested."""
    per = {arm: {run.get("seed"): dict(zip(*run.series(key))) for run in runs} for arm, runs in
           (("bn", bn), ("none", none))}
    steps = sorted({float(s) for d in per["bn"].values() for s in d})
    out = {"steps": [], "mean": [], "lo": [], "hi": []}
    for step in steps:
        a = {sd: d[step] for sd, d in per["bn"].items() if d.get(step, 0) > 0}
        b = {sd: d[step] for sd, d in per["none"].items() if d.get(step, 0) > 0}
        if set(a) & set(b):
            r = stats.ratio({k: a[k] for k in set(a) & set(b)}, {k: b[k] for k in set(a) & set(b)})
            out["steps"].append(step)
            out["mean"].append(r.mean)
            out["lo"].append(r.lo if math.isfinite(r.lo) else r.mean)
            out["hi"].append(r.hi if math.isfinite(r.hi) else r.mean)
    return out


def judge(runs: list[Run]) -> Judged:
    arms = arms_of(runs, ("model.norm",))
    bn, none = need(arms, ("bn",), "model.norm=bn"), need(arms, ("none",), "model.norm=none")
    measured, numbers = {}, {"arms": {}, "ratios": {}, "curves": {}, "measures": {}, "ratio_by_step": {}}
    s_bn, s_none = by_seed(bn, score), by_seed(none, score)
    measured["no_bn_trains"] = stats.mean_ci(list(s_none.values()), "plain") if s_none else None
    numbers["scores"] = {"BN": arm_json(s_bn), "no BN": arm_json(s_none)}
    win = windows(none)
    numbers["window"] = {"loss_fit": LOSS_FIT, "steps": {str(k): sorted(v) for k, v in win.items()},
                         "end": {str(k): (max(v) if v else None) for k, v in win.items()}}
    for metric, (key, what, panel) in MEASURES.items():
        v_bn, v_none = by_seed(bn, geo_mean(metric, win)), by_seed(none, geo_mean(metric, win))
        r = stats.ratio(v_bn, v_none) if v_bn and v_none else None
        measured[key] = measured[f"{key}_half"] = r
        numbers["measures"][key] = {"metric": metric, "what": what, "paper_panel": panel}
        numbers["arms"][key] = {"BN": arm_json(v_bn, "plain"), "no BN": arm_json(v_none, "plain")}
        numbers["ratios"][key] = r.to_json() if r else None
        numbers["curves"][key] = {"BN": log_curves(bn, metric), "no BN": log_curves(none, metric)}
        numbers["ratio_by_step"][key] = ratio_by_step(bn, none, metric)
    numbers["step_multiples"] = [0.5, 1.0, 2.0, 4.0]
    numbers["lr"] = bn[0].get("optim.lr", None)
    ours = "; ".join(f"{key.replace('_', ' ')} BN / no BN {measured[key].fmt()}" if measured[key] else
                     f"{key.replace('_', ' ')} not measured" for key, _, _ in MEASURES.values())
    return Judged(measured, numbers, ours)


def _claim_text() -> str:
    return (f"Santurkar et al. 2018, {PAPER['figure']} ({PAPER['net']} on {PAPER['data']}, with and without BN at the "
            f"same LR {PAPER['lr']:g}, step sizes up to eta = {PAPER['max_eta']:g}): {PAPER['finding']} "
            "(curves only; the text states no number)")


def figure(result: Result):
    """(a)-(c): each measure over training, BN vs no BN (mean over seeds with a 95% band, log y); (d) the three
    ratios BN / no BN with the paper's claim (below 1, clearly) beside them; the rule's tests on the right."""
    from bnrepro.report import style
    from bnrepro.report.style import color, legend

    n = result.numbers
    fig, gs = P.frame(result, 22, 6.2, (1, 5), ratios=[1, 1, 1, 0.8, 1], test_width=1.2)
    ends = [e for e in n.get("window", {}).get("end", {}).values() if e is not None]

    def shade(ax):  # the steps the tests read: up to the latest seed's window end
        if ends:
            ax.axvspan(0, max(ends), color="0.93", zorder=0, lw=0,
                       label=f"pre-convergence window (tests; ends {min(ends):g}-{max(ends):g})")

    for i, (key, what, panel) in enumerate(MEASURES.values()):
        ax = fig.add_subplot(gs[0, i])
        for name in ("no BN", "BN"):
            c = n["curves"][key][name]
            if not c["steps"]:
                continue
            cell = n["arms"][key][name]
            ax.plot(c["steps"], c["mean"], color=color(name), marker="o", markersize=3,
                    label=f"{name} (n={cell['n']}), geometric mean {cell['mean']:.3g}")
            ax.fill_between(c["steps"], c["lo"], c["hi"], color=color(name), alpha=0.2, lw=0)
        shade(ax)
        ax.set_yscale("log")
        ax.set_xlabel("training steps")
        ax.set_ylabel(style.wrap(what, 34))
        ax.set_title(f"({chr(97 + i)}) {panel.split(' ', 2)[-1]}\n(paper: {panel.split(' ')[0]} {panel.split(' ')[1]})")
        legend(ax, title="geometric mean over the window's steps")
    d = fig.add_subplot(gs[0, 3])
    keys = [key for key, _, _ in MEASURES.values()]
    pts = []
    for i, key in enumerate(keys):
        r = n["ratios"].get(key)
        if r:
            pts.append(style.dot(d, i, r, 1.0, col="black", label="ours: BN / no BN" if i == 0 else None))
    d.axhline(1.0, color="black", lw=0.8)
    d.axhspan(1e-6, STABLE_FACTOR, color="0.9", zorder=0,
              label=f"paper ({PAPER['net']}, {PAPER['data']}): clearly below 1\n"
                    f"(curves only; here: <= {STABLE_FACTOR:g}x)")
    d.set_yscale("log")
    ys = [v for p in pts for v in p[1:]] + [1.0, STABLE_FACTOR]
    d.set_ylim(min(ys) / 1.8, max(ys) * 1.8)
    style.ratio_axis(d.yaxis)
    style.categories(d, [k.replace("_", " ") for k in keys], 12)
    d.set_ylabel("ratio BN / no BN (log scale)")
    d.set_title("(d) ratios in the window, paired by seed")
    legend(d)
    e = fig.add_subplot(gs[0, 4])
    for key, ls in zip(keys, ("-", "--", ":")):
        c = n.get("ratio_by_step", {}).get(key)
        if c and c["steps"]:
            e.plot(c["steps"], c["mean"], ls, color="black", marker="o", markersize=3, label=key.replace("_", " "))
            e.fill_between(c["steps"], c["lo"], c["hi"], color="black", alpha=0.08, lw=0)
    shade(e)
    e.axhline(1.0, color="black", lw=0.8)
    e.set_yscale("log")
    style.ratio_axis(e.yaxis)
    e.set_xlabel("training steps")
    e.set_ylabel("ratio BN / no BN at the step (log scale)")
    e.set_title("(e) ratio per probe step (described, not tested)")
    legend(e)
    mults = ", ".join(f"{m:g}" for m in n.get("step_multiples", []))
    P.caption(fig, result, ["BN", "no BN"], f"Step sizes eta = LR x {mults}, on the step's training batch in "
              f"training mode; Santurkar et al. cap eta at {PAPER['max_eta']:g} (4x their LR). The paper draws "
              "curves and states no number, so its claim is drawn as a region, not as values. (a)-(c): geometric "
              "mean over seeds per probe step with its 95% band (t on the logs); (e): BN / no BN per step, paired "
              "by seed.")
    return fig


PILOT_CPU = (
    "pilot seeds 1000-1004. First, every probe step of 2,000-step runs (steps 10-150 and every 100): on digits the "
    "no-BN net's mean training loss is 2.2 at step 100 (the sigmoid net's initial plateau), 0.77 at 200, 0.33 at "
    "300, 0.15 at 400, 0.085 at 500 and 0.003 at 2,000; per step BN / no BN of the loss range is 0.37x at "
    "100-400 and scatters from 0.25x to 3.8x after 500 (intervals spanning a factor of 10), which fixed the window "
    "rule (LOSS_FIT) and the probe schedule. On MNIST-1D the no-BN net's loss is 1.7 from step 300 to 1,000 and "
    "1.43 at 2,000: it never fits, its window is the whole run. Then this design (probes at 25-400 and every 500; "
    "digits 1,000 steps, MNIST-1D 2,000): the window ends at step 300 for all 5 seeds on digits (7 probe steps) and "
    "covers all 12 on MNIST-1D. Digits: no BN scores 95.9% (precondition holds); BN / no BN loss range 0.53x "
    "[0.39, 0.72] (sd of log 0.25: n=4 for a factor 2), gradient change 0.62x [0.38, 1.02] (sd 0.40, n=5), "
    "beta-smoothness 1.00x [0.72, 1.37] (sd 0.26; at the boundary, no n decides it). MNIST-1D: no BN scores 36.6% "
    "(the precondition fails: at this LR and budget the no-BN net sits on a plateau; ~5,000 steps would be needed, "
    "C9's exploration), and BN's measures are larger, not smaller (2.92x, 3.18x, 1.79x). n capped at 5 seeds per "
    "arm by the suite's 30-minute budget on 2 cores (both datasets).")
# The design, frozen before the confirmation seeds ran (bnrepro/report/design.py): the report judges only
# confirmation runs of this config, and names the commit.
DESIGNS = {"cpu": Design(
    data=('digits', 'mnist1d'),
    config={"trainer.max_steps": {"digits": 1000, "mnist1d": 2000}, "trainer.eval_every": 500,
            "trainer.eval_at": [25, 50, 75, 100, 150, 200, 300, 400]},
    n=5,
    pilot=PILOT_CPU,
    commit="902df75")}


CLAIM = Claim("C11", "BN smooths the loss landscape", ("c11_smoothness",), PAPER, _claim_text(), RULE,
              ("model.norm",), judge, designs=DESIGNS)
FIGURE = figure


# --- the W&B Report's panels (bnrepro/report/panels.py) -----------------------------------------------------------

PANELS = [line("loss range along -g vs step (Santurkar Fig. 4a)", ["landscape_loss_range"]),
          line("gradient change along -g vs step (Fig. 4b)", ["landscape_grad_change"]),
          line("effective beta-smoothness vs step (Fig. 4c)", ["landscape_beta"]), TEST_ACC]
