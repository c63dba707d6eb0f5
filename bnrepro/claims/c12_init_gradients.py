"""C12: BN at initialization makes gradients explode with depth without skip connections (Yang et al. 2019,
"A Mean Field Theory of Batch Normalization", arXiv 1902.08129).

The paper: in a wide fully connected net with BN before every ReLU, at init, the expected squared gradient norm
of a layer's weights grows by lambda = pi/(pi-1) ~= 1.467 per layer going backwards (the large-batch limit of
their ReLU result; a finite batch makes it larger), so the gradient norm grows by sqrt(lambda) ~= 1.211 per
layer; no choice of init variance removes it (BN is scale-invariant), so deep plain BN nets are untrainable at
ordinary learning rates; skip connections tame it. A no-BN net at a critical init (Kaiming for ReLU) keeps the
gradient norm flat in expectation.

Ours (c12_init_gradients): the `init_gradients` probe's step-0 row: every conv/linear weight's gradient norm on
one training batch at init, and the per-layer growth rate fitted to them (bnrepro/probes/init_gradients.py).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
from pydantic import Field

from bnrepro.report import plots as P
from bnrepro.report import stats
from bnrepro.report.design import Design
from bnrepro.report.judging import DIRECTION, TRAINS, Claim, Judged, Missing, arm_json, by_seed, diff, score

from bnrepro.report.panels import TEST_ACC, bar
from bnrepro.report.rules import CORE, SUPPORT, Rule, Test
from bnrepro.report.runs import Run
from bnrepro.report.stats import Interval
from bnrepro.report.properties import Property
from bnrepro.schema import Group

PAPER_C12 = {
    "lambda_sq": math.pi / (math.pi - 1),        # squared-norm growth per layer, ReLU + BN, large batch
    "rate": math.sqrt(math.pi / (math.pi - 1)),  # the norm's growth per layer: 1.211
    "source": "Yang et al. 2019 (ICLR), ReLU + BN, large-batch limit",
}
FAMILIES = {"mlp": "MLP", "resnet_cifar": "conv net (CIFAR ResNet family)"}
ARMS = {("bn", False): "plain BN", ("bn", True): "BN + residual", ("none", False): "no BN (critical init)"}
FLAT = 0.05  # "flat": a growth rate within 1 +- 5% per layer; chosen before any run from the theory, not the data:
# a quarter of BN's predicted 21% per layer, and the size of the drift a finite width (100 units) gives a
# critical-init ReLU net's log gradient norm (of order 1/width per layer)
PAPER_MARGIN = 0.05  # our plain-BN rate vs the paper's 1.211: the same 5% per layer
EXPLODES = (f"'explodes' = grows by more than the {FLAT:g} per layer that the 'flat' test allows the no-BN net, "
            "so one number separates the two")
GROWTH = "init_grad_growth"
NORM = "init_grad_norm_"

RULE_C12 = Rule((
    Test("explodes", CORE, "without skips, BN's gradient norms grow going backwards (deepest MLP)",
         "the growth rate per layer of plain BN", "greater", 1 + FLAT, unit="plain",
         why=EXPLODES),
    Test("residual_tames", CORE, "skip connections tame it (deepest MLP)",
         "growth rate(plain BN) - growth rate(BN + residual), paired by seed", "greater", 0.0, unit="plain",
         why=DIRECTION, sesoi=FLAT),
    Test("critical_flat", CORE, "no BN at a critical init does not explode (deepest MLP)",
         "growth rate(no BN) - 1", "equivalent", FLAT, unit="plain",
         why=f"margin {FLAT:g} per layer, fixed from the theory before any run (a quarter of BN's predicted 0.21)"),
    Test("conv_explodes", SUPPORT, "the plain BN conv net explodes too (deepest conv net)",
         "the growth rate per layer of plain BN", "greater", 1 + FLAT, unit="plain", why=EXPLODES),
    Test("conv_residual_tames", SUPPORT, "its shortcuts tame it (deepest conv net)",
         "growth rate(plain BN) - growth rate(BN + residual), paired", "greater", 0.0, unit="plain", why=DIRECTION,
         sesoi=FLAT),
    Test("deep_plain_fails", SUPPORT, "the deepest plain BN MLP fails to train where the residual one trains",
         "score(BN + residual) - score(plain BN), deepest MLP, at the scale's LR", "greater", TRAINS,
         why=f"'fails to train' = at least {100 * TRAINS:g} points below the residual net (C10's bar for "
             "'trains'); fails if the plain net scores higher"),
    Test("paper_rate", SUPPORT, f"plain BN's rate matches the paper's sqrt(pi/(pi-1)) = {PAPER_C12['rate']:.3f}",
         f"growth rate(plain BN, deepest MLP) - {PAPER_C12['rate']:.3f}", "equivalent", PAPER_MARGIN, unit="plain",
         why=f"margin {PAPER_MARGIN:g} per layer: the theory is for infinite width and batch; ours are 100 and the "
             "scale's batch"),
), notes="Growth rate per layer: exp(-b), b the least-squares slope of log ||dL/dW_i|| on the layer index i "
         "over every conv/linear layer, one intercept per weight shape (so the first layer, the classifier and a "
         "stage's first conv, of other shapes, do not bend the line), measured once at init on a fixed training "
         "batch in training mode (step-0 metrics row, probe init_gradients). Deepest = the largest depth run per "
         "family. Intervals over seeds (one-sample or paired t).")


def arm_of(run: Run) -> tuple:
    residual = run.get("model.residual")
    if residual is None:  # the families' defaults: the MLP has no skips, the CIFAR ResNet has them
        residual = run.get("model.name") == "resnet_cifar"
    return (run.get("model.name"), run.get("model.norm"), bool(residual), run.get("model.depth"))


def init_row(run: Run) -> dict:
    return next((m for m in run.metrics if m.get("step") == 0 and GROWTH in m), {})


def growth(run: Run) -> float | None:
    v = init_row(run).get(GROWTH)
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def layer_norms(run: Run) -> list[float]:
    """The run's gradient norm per layer at init; empty where one is not a finite number (a gradient that
    overflowed at init is written as null: the profile leaves that run out, as growth() does)."""
    row = init_row(run)
    values = [row[k] for k in sorted(k for k in row if k.startswith(NORM))]
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        return []
    return [float(v) for v in values]


def profile(runs: list[Run]) -> dict:
    """log10 gradient norm per layer index: mean over seeds and its 95% interval (the geometric mean's)."""
    logs = [np.log10(np.clip(layer_norms(r), 1e-300, None)) for r in runs]
    logs = [x for x in logs if len(x)]
    if not logs:
        return {}
    n = min(len(x) for x in logs)
    ivs = [stats.mean_ci([x[i] for x in logs], "plain") for i in range(n)]
    return {"layer": list(range(n)), "mean": [iv.mean for iv in ivs],
            "lo": [iv.lo if math.isfinite(iv.lo) else iv.mean for iv in ivs],
            "hi": [iv.hi if math.isfinite(iv.hi) else iv.mean for iv in ivs]}


def judge_c12(runs: list[Run]) -> Judged:
    cells: dict[tuple, list[Run]] = {}
    for run in runs:
        cells.setdefault(arm_of(run), []).append(run)
    deepest = {}
    for family in FAMILIES:
        depths = sorted({d for (f, _, _, d) in cells if f == family})
        if depths:
            deepest[family] = depths[-1]
    if "mlp" not in deepest:
        raise Missing("no MLP runs")

    def cell(family, arm) -> list[Run]:
        key = (family, *arm, deepest.get(family))
        if key not in cells:
            raise Missing(f"no {ARMS[arm]} {FAMILIES[family]} runs at depth {deepest.get(family)}")
        return cells[key]

    g = {(f, arm): by_seed(cell(f, arm), growth) for f in deepest for arm in ARMS if (f, *arm, deepest[f]) in cells}
    for arm in ARMS:
        cell("mlp", arm)
    mlp = {arm: g[("mlp", arm)] for arm in ARMS}
    plain, res, none = mlp[("bn", False)], mlp[("bn", True)], mlp[("none", False)]
    conv = {arm: g.get(("resnet_cifar", arm), {}) for arm in ARMS}
    s_plain, s_res = by_seed(cell("mlp", ("bn", False)), score), by_seed(cell("mlp", ("bn", True)), score)
    trained = all(r.summary.get("steps", 0) > 1 for r in cell("mlp", ("bn", False)) + cell("mlp", ("bn", True)))
    measured = {
        "explodes": stats.mean_ci(list(plain.values()), "plain") if plain else None,
        "residual_tames": diff_plain(plain, res),
        "critical_flat": stats.tost(none, {s: 1.0 for s in none}, FLAT, "plain") if none else None,
        "conv_explodes": (stats.mean_ci(list(conv[("bn", False)].values()), "plain")
                          if conv[("bn", False)] else None),
        "conv_residual_tames": diff_plain(conv[("bn", False)], conv[("bn", True)]),
        "deep_plain_fails": diff(s_res, s_plain) if trained and s_plain and s_res else None,
        "paper_rate": (stats.tost(plain, {s: PAPER_C12["rate"] for s in plain}, PAPER_MARGIN, "plain")
                       if plain else None),
    }
    numbers = {
        "paper": PAPER_C12, "deepest": deepest, "families": {f: FAMILIES[f] for f in deepest},
        "growth": {FAMILIES[f]: {ARMS[arm]: {str(key[3]): arm_json(by_seed(rs, growth), "plain")
                                             for key, rs in sorted(cells.items(), key=lambda kv: kv[0][3])
                                             if key[:3] == (f, *arm)}
                                 for arm in ARMS}
                   for f in deepest},
        "profiles": {FAMILIES[f]: {ARMS[arm]: profile(cells[(f, *arm, deepest[f])]) for arm in ARMS
                                   if (f, *arm, deepest[f]) in cells} for f in deepest},
        "trained": {ARMS[arm]: arm_json(by_seed(cell("mlp", arm), score)) for arm in ARMS} if trained else {},
        "train_steps": max((r.summary.get("steps", 0) for r in cell("mlp", ("bn", False))), default=0),
        "diverged": {ARMS[arm]: sum(r.diverged for r in cell("mlp", arm)) for arm in ARMS},
        "ratio_first_last": {ARMS[arm]: arm_json(by_seed(cell("mlp", arm), first_last), "plain") for arm in ARMS},
    }
    text = (f"deepest MLP ({deepest['mlp']} layers), growth per layer: plain BN "
            f"{fmt(measured['explodes'])} (paper {PAPER_C12['rate']:.3f}), BN + residual "
            f"{fmt(stats.mean_ci(list(res.values()), 'plain') if res else None)}, no BN "
            f"{fmt(stats.mean_ci(list(none.values()), 'plain') if none else None)}")
    if trained:
        text += (f"; trained {numbers['train_steps']} steps: plain BN {numbers['trained']['plain BN']['text']}, "
                 f"BN + residual {numbers['trained']['BN + residual']['text']}")
    return Judged(measured, numbers, text)


def first_last(run: Run) -> float | None:
    """log10 of the first hidden layer's gradient norm over the last hidden layer's (MLP: layers 1 and -2)."""
    norms = layer_norms(run)
    if len(norms) < 4 or norms[-2] <= 0 or norms[1] <= 0:
        return None
    return math.log10(norms[1] / norms[-2])


def diff_plain(a: dict, b: dict) -> Interval | None:
    return stats.difference(a, b, "plain") if a and b else None


def fmt(iv: Interval | None) -> str:
    return "not measured" if iv is None else iv.fmt()


class Params(Group):
    """The claim's own config keys (claim_params: in its config files), checked at the door."""
    c12_train_steps: Optional[int] = Field(None, ge=1)  # the 100-layer MLP's training steps after the init probe



PILOT_CPU = (
    "exploration runs, seeds 0-4 (results/cpu at dd16a63, `python -m bnrepro.report.power runs/cpu`): plain BN's "
    "growth 1.22 per layer [1.22, 1.23], sd 0.0035 (n=2); the residual net's cut 0.207, sd 0.006; deep_plain_fails "
    "+55.8 points, sd 22.8 (bimodal: some seeds train). n capped at 5 seeds per arm by the suite's 30-minute budget "
    "on 2 cores (both datasets).")
# The design, frozen before the confirmation seeds ran (bnrepro/report/design.py): the report judges only
# confirmation runs of this config, and names the commit.
DESIGNS = {"cpu": Design(
    data=('digits',),
    config={"claim_params.c12_train_steps": 100, "trainer.eval_every": 25},
    n=5,
    pilot=PILOT_CPU,
    commit="ce1ae7e")}


CLAIM = Claim(
    "C12", "BN at init makes gradients explode with depth without skip connections", ("c12_init_gradients",),
    PAPER_C12,
    f"Yang et al. 2019: in a deep ReLU net with BN and no skips, at init the squared gradient norm grows by "
    f"pi/(pi-1) = {PAPER_C12['lambda_sq']:.3f} per layer going backwards (large batch), the norm by "
    f"{PAPER_C12['rate']:.3f}; no init removes it; such nets do not train at ordinary LRs; skip connections tame "
    "it; a critical-init net without BN does not explode",
    RULE_C12, arm_of, judge_c12, designs=DESIGNS)


ARM_COLORS = {"plain BN": "#1f77b4", "BN + residual": "#17becf", "no BN (critical init)": "#7f7f7f"}


def figure(result):
    """(a, b) log10 gradient norm per layer at init, deepest MLP and conv net, per arm, the paper's slope beside
    plain BN's; (c) growth rate per layer vs depth, both families; (d) the deepest MLP's score after training."""
    from bnrepro.report import style

    n = result.numbers
    fig, gs = P.frame(result, 17, 9, (2, 2), test_width=1.1)
    rate = PAPER_C12["rate"]
    for k, family in enumerate(n.get("profiles", {})):
        ax = fig.add_subplot(gs[0, k])
        for arm, prof in n["profiles"][family].items():
            if not prof:
                continue
            c = ARM_COLORS.get(arm)
            ax.plot(prof["layer"], prof["mean"], color=c, lw=1.5)
            ax.fill_between(prof["layer"], prof["lo"], prof["hi"], color=c, alpha=0.25, lw=0)
        plain = n["profiles"][family].get("plain BN")
        if k == 0 and plain and len(plain["layer"]) > 3:
            last = len(plain["layer"]) - 2  # the last hidden layer (the classifier has another shape)
            xs = list(range(1, last + 1))
            ys = [plain["mean"][last] + (last - x) * math.log10(rate) for x in xs]
            ax.plot(xs, ys, "k--", lw=1)
            marks = xs[::max(1, len(xs) // 5)]
            for j, x in enumerate(marks):
                style.paper(ax, x, plain["mean"][last] + (last - x) * math.log10(rate),
                            label=f"paper: x{rate:.3f} per layer backwards (Yang et al., ReLU + BN, no skips)"
                            if j == 0 else "_")
        depth = n["deepest"].get("mlp" if k == 0 else "resnet_cifar")
        ax.set_xlabel("layer (conv/linear, input first)")
        ax.set_ylabel("log10 ||dL/dW|| at init")
        ax.set_title(f"({'ab'[k]}) {family}, depth {depth}: gradient norm per layer")
        style.legend(ax)
    paper_label = f"paper: x{rate:.3f} per layer backwards (Yang et al., ReLU + BN, no skips)"
    ax = fig.add_subplot(gs[1, 0])
    pts, ticks = [], []
    for family, arms in n.get("growth", {}).items():
        short = family.split(" ")[0]
        depths = sorted({d for by_depth in arms.values() for d in by_depth}, key=float)
        for d in depths:
            x = len(ticks)
            ticks.append(f"{short}\n{d}")
            for j, (arm, by_depth) in enumerate(arms.items()):
                if d in by_depth:
                    pts.append(style.dot(ax, x + 0.12 * (j - 1), by_depth[d], 1.0, col=ARM_COLORS.get(arm),
                                         label=f"{arm} (n={by_depth[d]['n']})"))
            if short == "MLP":  # the theory is for fully connected nets
                style.paper(ax, x + 0.3, rate, label=paper_label)
                pts.append((x, rate, rate, rate))
        if ticks and family != list(n["growth"])[-1]:
            ax.axvline(len(ticks) - 0.5, color="0.6", lw=0.8)
    ax.axhspan(1 - FLAT, 1 + FLAT, color="0.9", zorder=0, label=f"flat: 1 +- {FLAT:g}")
    style.categories(ax, ticks, 14)
    ax.set_xlabel("family and depth (MLP: hidden layers; conv: 6n+2 layers)")
    style.zoom(ax, pts, "", label="growth rate of ||dL/dW|| per layer, backwards")
    ax.set_title("(c) growth rate per layer vs depth")
    style.legend(ax)
    ax = fig.add_subplot(gs[1, 1])
    trained = n.get("trained") or {}
    if trained:
        tpts = [style.dot(ax, i, cell, col=ARM_COLORS.get(arm)) for i, (arm, cell) in enumerate(trained.items())]
        tpts.append((0, 10.0, 10.0, 10.0))
        style.categories(ax, [f"{arm}\n(n={cell['n']}, {n['diverged'].get(arm, 0)} diverged)"
                              for arm, cell in trained.items()], 16)
        style.zoom(ax, tpts, label="score, test accuracy (%)", floor=0.0)
        ax.axhline(10, color="black", ls=":", lw=1, label="chance (10 classes)")
        ax.set_title(f"(d) deepest MLP ({n['deepest'].get('mlp')} layers) after {n.get('train_steps')} steps "
                     "at the scale's LR")
    else:
        ax.text(0.5, 0.5, "not trained", transform=ax.transAxes, ha="center")
        ax.set_title("(d) deepest MLP after training")
    style.legend(ax)
    P.caption(fig, result, extra="Plain BN = BN before every "
               "ReLU, no skip connections; BN + residual = the same with identity skips; no BN = Kaiming fan_in "
               "(critical for ReLU). The paper's rate is the large-batch theory for fully connected ReLU nets "
               "(the dashed line in (a) has its slope, anchored at our plain BN's last hidden layer).")
    return fig


FIGURE = figure


# --- the W&B Report's panels (bnrepro/report/panels.py) -----------------------------------------------------------

# measured at initialization (a step-0 history row) or at the end (summary.json's end_probes, which W&B shows
# as the nested summary keys end_probes.<key>)
PANELS = [bar("gradient growth per layer, backwards, at init (Yang et al.: 1.21 for plain BN)",
              ["init_grad_growth"]),
          bar("final test accuracy per arm (the trained arms)", ["final_acc"]), TEST_ACC]


# --- BN's property this claim gives the scorecard (bnrepro/report/properties.py, bnrepro/scorecard/) -----------

PROPERTY = Property(
    "deep plain nets trainable at init (no gradient explosion)", "no grad explosion",
    Test("explodes", CORE, f"without skips, the norm's gradient norms grow by at most {FLAT:g} per layer going "
         "backwards (deepest MLP)", "the growth rate per layer of the plain net with the norm", "less", 1 + FLAT,
         unit="plain", why=f"C12's bar for 'explodes', 1 + FLAT, read on its other side: {EXPLODES}"),
    arms=("c12_net=mlp_100", "c12_arm=bn,bn_residual"), reference=("c12_net=mlp_100",))
