"""C16: BN reduces internal covariate shift, the claim of the paper's title, tested by Santurkar et al.'s
operational definition (2018, "How Does Batch Normalization Help Optimization?", section 2.2, Definition 2.1,
Fig. 3). Experiment c16_ics: BN, noisy BN (C9's) and no BN, paired seeds; the `ics` probe
(bnrepro/probes/ics.py) measures at every evaluation step, for each layer i after the first: G, the gradient of
the loss w.r.t. W_i on the step's batch, and G', the same after the layers before i took the optimizer's update;
ICS_i = ||G - G'||_2, and cos(G, G').

Santurkar et al. find the contrary of the title: "models with BatchNorm have similar, or even worse, internal
covariate shift" by this measure (their Fig. 3: VGG on CIFAR-10 and a 25-layer deep linear net, with and without
BN; the BN nets' l2 differences are as large or larger, and their cosines as far from 1 or further, while they
train faster). Their figure's values could NOT be retrieved from this machine's sources (the paper's text and
figures were not readable here; the sentence above is their finding as we recall it, not verified), so our
figure draws their finding as a region, not as values.

The rule (fixed on pilot seeds 1000-1004, PILOT_CPU, before the confirmation runs):
- per run, each measure is the geometric mean over every probe step and every layer after the first (the
  measures span orders of magnitude across layers and over training; the log scale weighs each alike);
  1 - cos is the angle measure (0 = no change of direction);
- BN / no BN: the geometric-mean ratio over seeds with a paired t interval on the log ratios (same init draw and
  batch order in both arms); "BN reduces ICS" holds when the interval lies below 1, fails above 1, for both
  Santurkar's measures (core): the title's claim needs the shift smaller however it is measured;
- "clearly" (support): at most half, the factor the rules call far (C4's STABLE_FACTOR);
- precondition: the no-BN net learns (mean score above twice the 10% chance of both datasets): the gradients
  of a net that learns nothing say nothing about the shift training causes;
- the relative shift ||G - G'|| / ||G|| (BN changes the size of the gradients, which the raw norm mixes in) and
  noisy BN's ratios to BN and to no BN are reported beside the tests, not tested.
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

MEASURES = {  # key -> (metrics prefix, what it is, value from the metric)
    "l2": ("ics_l2_", "||G - G'||_2 (Santurkar's ICS)", lambda v: v),
    "angle": ("ics_cos_", "1 - cos(G, G')", lambda v: 1.0 - v),
    "rel": ("ics_rel_", "||G - G'|| / ||G||", lambda v: v),
}
TESTED = ("l2", "angle")  # Santurkar's two measures; rel is reported beside them
LEARNS = 0.2  # the no-BN net learns: mean score above twice the 10% chance of digits and MNIST-1D
ARMS = ("bn", "noisy_bn", "none")
PAPER = {"nets": "VGG and a 25-layer deep linear net (DLN)", "data": "CIFAR-10", "figure": "Fig. 3",
         "numbers": None,  # curves only, and not retrievable here
         "finding": "BN nets have similar or even worse ICS by this measure (l2 difference as large or larger, "
                    "cosine as far from 1 or further), while they train faster"}

RULE = Rule((
    Test("no_bn_learns", PRECONDITION, "the no-BN net learns (else its gradients are a stalled net's)",
         "score(no BN)", "greater", LEARNS, unit="plain",
         why="twice the 10% chance of digits and MNIST-1D: a net at chance level has no training to shift"),
    *(Test(key, CORE, f"BN's {MEASURES[key][1]} is smaller than no-BN's", f"the ratio BN / no BN of {MEASURES[key][1]}"
           ", geometric mean over probe steps and layers", "less", 1.0, unit="ratio", why=DIRECTION_RATIO)
      for key in TESTED),
    *(Test(f"{key}_half", SUPPORT, f"clearly smaller: BN's {MEASURES[key][1]} at most half of no-BN's",
           f"the ratio BN / no BN of {MEASURES[key][1]}", "less", STABLE_FACTOR, unit="ratio",
           why=f"{STABLE_FACTOR:g}x is the factor the rules call far (C4); the title's claim is a clear reduction")
      for key in TESTED),
), notes="At every evaluation step, on the step's training batch in training mode, for each conv or linear layer i "
         "after the first: G = dL/dW_i, G' = dL/dW_i after every parameter before W_i took the update the run's "
         "SGD makes from this gradient (its momentum buffer read, not changed); ICS = ||G - G'||_2 and 1 - cos(G, G'). "
         "Per run each is the geometric mean over probe steps and layers; BN / no BN paired by seed.")


def layers_of(run: Run, prefix: str) -> list[int]:
    """The layer numbers the run's probe recorded for a measure's prefix."""
    keys = {k for row in run.metrics for k in row if k.startswith(prefix)}
    return sorted(int(k[len(prefix):]) for k in keys if k[len(prefix):].isdigit())


def values_of(run: Run, key: str, layer: int | None = None) -> list[tuple[float, float]]:
    """(step, value) of a measure, every layer (or one), finite and positive values only."""
    prefix, _, f = MEASURES[key]
    out = []
    for i in ([layer] if layer else layers_of(run, prefix)):
        for step, v in zip(*run.series(f"{prefix}{i}")):
            value = f(float(v))
            if math.isfinite(value) and value > 0:
                out.append((float(step), value))
    return out


def geo(values) -> float | None:
    return float(np.exp(np.mean(np.log(values)))) if len(values) else None


def run_measure(key: str, layer: int | None = None):
    """A run's geometric mean of a measure over its probe steps (and layers); None when diverged or unmeasured."""
    def value(run: Run) -> float | None:
        return None if run.diverged else geo([v for _, v in values_of(run, key, layer)])
    return value


def curves(runs: list[Run], key: str) -> dict:
    """{"steps", "mean", "lo", "hi"}: per probe step the geometric mean over runs (each run's geometric mean over
    its layers) with a 95% t interval on the logs."""
    by_step: dict[float, list[float]] = {}
    for run in runs:
        per: dict[float, list[float]] = {}
        for step, v in values_of(run, key):
            per.setdefault(step, []).append(v)
        for step, vs in per.items():
            by_step.setdefault(step, []).append(math.log(geo(vs)))
    steps = sorted(by_step)
    ivs = [stats.mean_ci(by_step[s], "plain") for s in steps]
    fin = lambda x, m: math.exp(x if math.isfinite(x) else m)
    return {"steps": steps, "mean": [math.exp(iv.mean) for iv in ivs], "lo": [fin(iv.lo, iv.mean) for iv in ivs],
            "hi": [fin(iv.hi, iv.mean) for iv in ivs]}


def judge(runs: list[Run]) -> Judged:
    arms = arms_of(runs, ("model.norm",))
    bn, none = need(arms, ("bn",), "model.norm=bn"), need(arms, ("none",), "model.norm=none")
    noisy = arms.get(("noisy_bn",), [])
    s = {name: by_seed(rs, score) for name, rs in (("BN", bn), ("noisy BN", noisy), ("no BN", none))}
    measured = {"no_bn_learns": stats.mean_ci(list(s["no BN"].values()), "plain") if s["no BN"] else None}
    numbers = {"scores": {k: arm_json(v) for k, v in s.items()}, "arms": {}, "ratios": {}, "noisy": {},
               "curves": {}, "layers": {}, "measures": {k: MEASURES[k][1] for k in MEASURES}}
    for key in MEASURES:
        v = {name: by_seed(rs, run_measure(key)) for name, rs in (("BN", bn), ("noisy BN", noisy), ("no BN", none))}
        r = stats.ratio(v["BN"], v["no BN"]) if v["BN"] and v["no BN"] else None
        if key in TESTED:
            measured[key] = measured[f"{key}_half"] = r
        numbers["arms"][key] = {name: arm_json(vals, "plain") for name, vals in v.items()}
        numbers["ratios"][key] = r.to_json() if r else None
        numbers["noisy"][key] = {
            "noisy BN / BN": stats.ratio(v["noisy BN"], v["BN"]).to_json() if v["noisy BN"] and v["BN"] else None,
            "noisy BN / no BN": (stats.ratio(v["noisy BN"], v["no BN"]).to_json()
                                 if v["noisy BN"] and v["no BN"] else None)}
        numbers["curves"][key] = {name: curves(rs, key) for name, rs in (("BN", bn), ("noisy BN", noisy),
                                                                         ("no BN", none)) if rs}
        per_layer = {}
        for i in layers_of(bn[0], MEASURES[key][0]):
            a, b = by_seed(bn, run_measure(key, i)), by_seed(none, run_measure(key, i))
            per_layer[str(i)] = stats.ratio(a, b).to_json() if a and b else None
        numbers["layers"][key] = per_layer
    numbers["lr"] = bn[0].get("optim.lr", None)
    ours = "; ".join(f"{MEASURES[k][1]}: BN / no BN {measured[k].fmt()}" if measured.get(k) else
                     f"{MEASURES[k][1]} not measured" for k in TESTED)
    return Judged(measured, numbers, ours)


def _claim_text() -> str:
    return (f"The paper's title: BN accelerates training by reducing internal covariate shift; measured by Santurkar "
            f"et al.'s Definition 2.1, whose {PAPER['figure']} ({PAPER['nets']} on {PAPER['data']}) finds the "
            f"contrary: {PAPER['finding']} (curves only; not retrievable here)")


def figure(result: Result):
    """(a)-(b) each tested measure over training per arm (geometric mean over seeds with a 95% band, log y); (c) the
    BN / no BN ratio per layer; (d) the tested ratios and noisy BN's beside the claim's region; the tests."""
    from matplotlib.ticker import MaxNLocator

    from bnrepro.report import style
    from bnrepro.report.style import color, legend

    n = result.numbers
    fig, gs = P.frame(result, 20, 6.2, (1, 4), ratios=[1, 1, 1, 1], test_width=1.2)
    for i, key in enumerate(TESTED):
        ax = fig.add_subplot(gs[0, i])
        for name, c in n["curves"][key].items():
            if not c["steps"]:
                continue
            cell = n["arms"][key][name]
            ax.plot(c["steps"], c["mean"], color=color(name), marker="o", markersize=3,
                    label=f"{name} (n={cell['n']}), geometric mean {cell['mean']:.3g}")
            ax.fill_between(c["steps"], c["lo"], c["hi"], color=color(name), alpha=0.2, lw=0)
        ax.set_yscale("log")
        ax.set_xlabel("training steps")
        ax.set_ylabel(style.wrap(MEASURES[key][1] + ", geometric mean over layers", 34))
        ax.set_title(f"({chr(97 + i)}) {MEASURES[key][1]}\n(paper: Santurkar et al. {PAPER['figure']})")
        legend(ax)
    c = fig.add_subplot(gs[0, 2])
    for key, marker in zip(MEASURES, ("o", "s", "^")):
        per = {int(k): v for k, v in n["layers"].get(key, {}).items() if v}
        for j, (layer, r) in enumerate(sorted(per.items())):
            style.dot(c, layer + (marker == "s") * 0.15 - (marker == "^") * 0.15, r, 1.0, col="black",
                      marker=marker, label=MEASURES[key][1] if j == 0 else None)
    c.axhline(1.0, color="black", lw=0.8)
    c.xaxis.set_major_locator(MaxNLocator(integer=True))
    c.set_yscale("log")
    style.ratio_axis(c.yaxis)
    c.set_xlabel("layer (conv or linear, from the input; the first has nothing before it)")
    c.set_ylabel("ratio BN / no BN (log scale)")
    c.set_title("(c) per layer, paired by seed (described, not tested)")
    legend(c)
    d = fig.add_subplot(gs[0, 3])
    pts = []
    for i, key in enumerate(MEASURES):
        r = n["ratios"].get(key)
        if r:
            pts.append(style.dot(d, i, r, 1.0, col="black", label="ours: BN / no BN" if i == 0 else None))
        q = n["noisy"].get(key, {}).get("noisy BN / no BN")
        if q:
            pts.append(style.dot(d, i + 0.2, q, 1.0, col=color("noisy BN"), marker="s",
                                 label="ours: noisy BN / no BN" if i == 0 else None))
    d.axhline(1.0, color="black", lw=0.8)
    d.axhspan(1.0, 1e6, color="0.9", zorder=0, label="Santurkar et al.: BN's ICS as large or larger\n(curves only)")
    d.set_yscale("log")
    ys = [v for p in pts for v in p[1:]] + [1.0, STABLE_FACTOR]
    d.set_ylim(min(ys) / 1.8, max(ys) * 1.8)
    style.ratio_axis(d.yaxis)
    style.categories(d, [MEASURES[k][1] for k in MEASURES], 14)
    d.set_ylabel("ratio to no BN (log scale)")
    d.set_title("(d) ratios over probe steps and layers\n(l2 and 1 - cos tested; relative described)")
    legend(d)
    P.caption(fig, result, ["BN", "noisy BN", "no BN"], "ICS per Santurkar et al.'s Definition 2.1 at every "
              "evaluation step on the step's batch in training mode, the update the run's own SGD makes. The paper "
              "draws curves and states no number, and they were not retrievable here, so its finding is drawn as "
              "a region.")
    return fig


PILOT_CPU = (
    "pilot seeds 1000-1004, this design (runs/pilot/cpu; the probe at steps 10, 25, 50, 100, 150 and every 250; "
    "digits 1,000 steps, MNIST-1D 2,000 for the MLP and ResNet-8). Scores: digits BN 97.1%, noisy BN 97.1%, no BN "
    "96.3%; MNIST-1D MLP 59.8%, 53.3%, 39.2% (the no-BN MLP learns slowly there, far above chance: the "
    "precondition holds); ResNet-8 96.8%, 95.7%, 94.0%. BN / no BN, ||G - G'||: digits 2.83x [2.25, 3.56] (sd of "
    "the log ratio 0.18), MNIST-1D MLP 4.44x [3.74, 5.26] (sd 0.14), ResNet-8 0.40x [0.24, 0.68] (sd 0.43); "
    "1 - cos: 6.93x [3.75, 12.81] (sd 0.49), 10.05x [6.83, 14.79] (sd 0.31), 0.42x [0.22, 0.80] (sd 0.52). So the "
    "MLP shows Santurkar et al.'s finding (BN's shift larger, most in the first layers after the input: layer 2 "
    "7.8x and 20.8x), the conv net the title's (smaller in every layer, 0.30-0.65x). The relative shift "
    "||G - G'|| / ||G|| goes the same way (3.36x, 2.64x, 0.65x), so the raw norm's verdict is not BN's gradient "
    "size. Noisy BN / BN: ||G - G'|| 1.28x, 0.59x, 0.86x; 1 - cos 0.73x, 0.40x, 0.47x (the noise is the same in "
    "G's and G''s passes, so it adds no shift of its own to this measure). n: 80% power for a factor of 2 at the "
    "largest sd (1 - cos: 0.49 on digits, 0.52 on ResNet-8) needs 7 seeds; 7 confirmation seeds per arm "
    "(2000-2006), about 40 s of CPU a seed for the three cells' 9 runs.")
DESIGNS = {"cpu": Design(
    data=("digits", "mnist1d", "mnist1d/resnet_cifar"),
    config={"trainer.max_steps": {"digits": 1000, "mnist1d": 2000, "mnist1d/resnet_cifar": 2000},
            "trainer.eval_every": 250, "trainer.eval_at": [10, 25, 50, 100, 150]},
    n=7,
    pilot=PILOT_CPU,
    commit="41bb877")}

CLAIM = Claim("C16", "BN reduces internal covariate shift (the title; Santurkar et al. find it does not)",
              ("c16_ics",), PAPER, _claim_text(), RULE, ("model.norm",), judge, designs=DESIGNS)
FIGURE = figure


# --- the W&B Report's panels (bnrepro/report/panels.py) -----------------------------------------------------------

PANELS = [line("||G - G'|| of layer 2 vs step (Santurkar Fig. 3)", ["ics_l2_2"]),
          line("cos(G, G') of layer 2 vs step (Fig. 3)", ["ics_cos_2"]), TEST_ACC]
