"""One PNG per claim, drawn only from the judge's numbers (Result.numbers and Result.checks) and the paper's
table in claims.py, never from the runs, so a figure and its verdict cannot group runs differently.

Every figure: ours as means with 95% error bars (bands for curves), the paper's numbers beside them as hollow
black diamonds labelled "paper ..." where the paper gives any (its claim in the caption where it gives none),
shared y where panels are compared, y zoomed to where the differences live (range stated in the label), and
the rule's tests in the right-hand column. `render` returns the Figure; `draw` saves it."""
from __future__ import annotations

import math
from pathlib import Path

from bnrepro.report import plots as P
from bnrepro.report import style
from bnrepro.report.claims import PAPER_C1, PAPER_C2, PAPER_C3, PAPER_C5, PAPER_C7
from bnrepro.report.judging import Result
from bnrepro.report.rules import NOT_RUN
from bnrepro.report.style import color, dot, legend, paper, plt, zoom

PAPER_TEST_MARKS = {  # the paper's value of a tested quantity, drawn on the tests panel
    "C1": {"far": (PAPER_C1["speedup"]["BN-x5"], f"paper: BN-x5 {PAPER_C1['speedup']['BN-x5']:.1f}x (ImageNet)")},
    "C5": {"unnecessary": (100 * PAPER_C5["acc_loss"], "paper: BN-x5 lost 0 points without dropout")},
}


def _frame(result: Result, *args, **kw):
    """plots.frame, with the paper's value of a tested quantity drawn on the tests panel where there is one."""
    return P.frame(result, *args, marks=PAPER_TEST_MARKS.get(result.id), **kw)


# --- the figures -----------------------------------------------------------------------------------------

def fig1(result: Result):
    n = result.numbers
    fig, gs = _frame(result, 17, 9, (2, 3), ratios=[1.25, 1, 1], test_width=1.1)
    a = fig.add_subplot(gs[0, 0])
    lows = []
    for name, c in n["curves"].items():
        if c["steps"]:
            a.plot(c["steps"], [100 * m for m in c["mean"]], color=color(name), label=name,
                   marker="o" if len(c["steps"]) < 5 else None, markersize=3)  # few evaluations: show them
            a.fill_between(c["steps"], [100 * v for v in c["lo"]], [100 * v for v in c["hi"]], color=color(name),
                           alpha=0.2, lw=0)
            lows.append(min(100 * v for v in c["lo"]))
    a.axhline(100 * n["target"], color="black", ls=":", lw=1, label=f"target {100 * n['target']:.1f}% (val)")
    a.set_xscale("log")
    bottom = max(0.0, min(lows or [0.0]) - 2)
    a.set_ylim(bottom, 100)
    a.set_ylabel(f"test accuracy (%)\naxis {bottom:.0f} to 100%")
    a.set_xlabel("training steps (log scale)")
    a.set_title("(a) test accuracy over training")
    legend(a)
    b, c = fig.add_subplot(gs[0, 1]), fig.add_subplot(gs[0, 2])
    P.percentiles(b, n["percentiles"]["no BN"], "no BN", "(b) without BN")
    P.percentiles(c, n["percentiles"]["BN"], "BN", "(c) with BN")
    style.share_y(b, c)
    c.set_ylabel("")
    legend(c)
    _steps_table(fig.add_subplot(gs[1, 0:2]), result)
    d = fig.add_subplot(gs[1, 2])
    P.arm_dots(d, n["arms"], ylabel="score: test accuracy (%)")
    d.set_title("(d) score: mean test accuracy over the last k evaluations")
    P.caption(fig, result, ["BN", "no BN"], "The paper gives no numbers for Fig. 1; panels (b) and (c) share y.")
    return fig


def _steps_table(ax, result: Result) -> None:
    """Steps to the target (validation accuracy) per seed, mean with 95% interval, and the speed-up."""
    n = result.numbers
    per_seed = n["steps_to_target"]
    steps = n.get("steps", {})
    seeds = sorted({s for d in per_seed.values() for s in d}, key=str)
    names = {"bn": "BN", "none": "no BN"}
    rows, labels = [], []
    for key, d in per_seed.items():
        name = names.get(key, key)
        cell = steps.get(name)
        reached = sum(v is not None for v in d.values())
        rows.append([f"{d[s]:,.0f}" if d.get(s) is not None else "not reached" for s in seeds]
                    + [f"{reached}/{len(d)}", _plain(cell)])
        labels.append(name)
    faster = next((c for c in result.checks if c["key"] == "faster"), None)
    ax.axis("off")
    columns = [f"seed {s}" for s in seeds] + ["reached", "mean [95%]"]
    table = ax.table(cellText=rows, rowLabels=labels, colLabels=columns,
                     loc="upper center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(style.FONT["label"])
    table.scale(1, 1.5)
    speed = faster["interval"]["text"] if faster and faster["interval"] else "not measured"
    ax.set_title(f"(e) steps to the target {100 * n['target']:.1f}% (first evaluation with validation accuracy "
                 f">= target)\nspeed-up no BN / BN: {speed}")


def _plain(cell: dict | None) -> str:
    if not cell or not cell.get("n"):
        return "-"
    lo, hi = cell["lo"], cell["hi"]
    return f"{cell['mean']:,.0f}" + (f" [{lo:,.0f}, {hi:,.0f}]" if math.isfinite(lo) else "")


def c1(result: Result):
    n = result.numbers
    ladder = n["ladder"]
    names = list(ladder)
    fig, gs = _frame(result, 17, 6.2, (1, 3), ratios=[1.2, 1, 0.9], test_width=1.1)
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


def c2(result: Result):
    n = result.numbers
    fig, gs = _frame(result, 16, 6, (1, 2), test_width=1.0)
    a = fig.add_subplot(gs[0, 0])
    series = P.by_norm(n["arms"], P.parse_lr)
    pts = P.lines(a, series, dodge=1.08)
    mult = PAPER_C2["diverged_lr"] / PAPER_C2["base_lr"]
    lrs = sorted({lr for v in series.values() for lr, _ in v} | {1.0, mult, 30.0})
    P.log_x(a, lrs, "learning rate multiplier (LR x)")
    zoom(a, pts, label="ours: score, test accuracy (%)")
    for key, k in n["diverged"].items():
        if k:
            norm, lr = P.parse_lr(key)
            a.annotate(f"{k}/{n['arms'][key]['n']} diverged", (lr, 0.1), xycoords=("data", "axes fraction"),
                       ha="center", fontsize=style.FONT["tick"], color=color(norm))
    a.set_title(f"(a) ours ({n.get('data', 'digits')}): score per learning rate")
    p = fig.add_subplot(gs[0, 1])
    base = [(1, PAPER_C1["max_acc"]["Inception"], "no BN"), (1, PAPER_C1["max_acc"]["BN-Baseline"], "BN"),
            (5, PAPER_C1["max_acc"]["BN-x5"], "BN"), (30, PAPER_C2["bn_x30_acc"], "BN")]
    for i, (x, y, norm) in enumerate(base):
        paper(p, x, y, label={0: "paper: no BN (Inception)", 1: "paper: BN (BN-Baseline, -x5, -x30)"}.get(i, "_"),
              markeredgecolor=color(norm))
    p.plot([mult], [0.05], marker="X", color=color("none"), linestyle="none", markersize=9,
           transform=p.get_xaxis_transform(), label=f"paper: no BN diverged at x{mult:g}")
    p.annotate("diverged", (mult, 0.1), xycoords=("data", "axes fraction"), ha="center",
               fontsize=style.FONT["tick"], color=color("none"))
    zoom(p, [(x, y, y, y) for x, y, _ in base], label="paper: max top-1 accuracy (%)")
    P.log_x(p, lrs, "learning rate multiplier (LR x)")
    p.set_title("(b) paper (ImageNet Inception), its own y range")
    P.caption(fig, result, ["BN", "no BN"], "A diverged run scores 0 (drawn as v below the axis when off the range).")
    return fig


def c3(result: Result):
    n = result.numbers
    flow = n.get("gradient_flow")
    fig, gs = _frame(result, 22 if flow else 16, 6, (1, 3 if flow else 2), test_width=1.0)
    a = fig.add_subplot(gs[0, 0])
    acts = ["sigmoid", "relu"]
    pts = []
    offsets = {"BN": -0.12, "no BN": 0.12}
    relu_bn = None
    for key, cell in n["arms"].items():
        act, rest = key.split(", ", 1)
        norm = rest.split(" (")[0]
        if act not in acts:
            acts.append(act)
        pts.append(dot(a, acts.index(act), cell, col=color(norm), offset=offsets.get(norm, 0.0),
                       label=f"{norm}" if act == "sigmoid" else None))
        if act == "relu" and norm == "BN":
            relu_bn = cell["mean"]
    lr = n.get("lr_mult", {})
    style.categories(a, [f"{act}\n" + ", ".join(f"{k.split(', ')[1]} x{v:g}" for k, v in lr.items()
                                                   if k.startswith(act + ",")) for act in acts], 30)
    if relu_bn is not None:
        y = 100 * PAPER_C3["keep"] * relu_bn
        a.axhline(y, color="black", ls="--", lw=1,
                  label=f"paper's ratio: {100 * PAPER_C3['keep']:.1f}% of our ReLU + BN")
        pts.append((0, y, y, y))
    zoom(a, pts, label="ours: score, test accuracy (%)")
    a.set_title(f"(a) ours ({n.get('data', 'digits')}), each arm at its LR chosen on validation")
    legend(a)
    p = fig.add_subplot(gs[0, 1])
    table = [(0, PAPER_C3["sigmoid_bn"], "BN"), (0, PAPER_C3["sigmoid_none_max"], "no BN"),
             (1, PAPER_C3["relu_bn"], "BN"), (1, PAPER_C3["relu_none"], "no BN")]
    ppts = []
    for i, (x, y, norm) in enumerate(table):
        paper(p, x + offsets[norm], y, label=f"paper: {norm}" if i < 2 else "_", markeredgecolor=color(norm))
        ppts.append((x + offsets[norm], y, y, y))
    style.categories(p, ["sigmoid", "relu"])
    zoom(p, ppts, label="paper: top-1 accuracy (%)")
    p.set_title("(b) paper (ImageNet Inception), its own y range")
    legend(p)
    extra = ""
    if flow:
        _gradient_flow(fig.add_subplot(gs[0, 2]), flow)
        extra = (" (c): the weight-gradient norm of each layer, from the training step's own .grad at each "
                 "evaluation (geometric mean over evaluations; mean and 95% interval over seeds), each arm at its "
                 "chosen LR; the paper gives no number for gradient flow.")
    P.caption(fig, result, ["BN", "no BN"], "Sigmoid without BN in the paper: never above 0.1%." + extra)
    return fig


def _gradient_flow(ax, flow: dict) -> None:
    """Per-layer gradient norms, first layer to classifier, one line per (activation, norm) arm; log y."""
    for arm, cells in flow.get("layers", {}).items():
        act, norm = arm.split(", ", 1)
        xs = list(range(len(cells)))
        ax.plot(xs, [c["mean"] for c in cells], color=color(norm), ls="-" if act == "sigmoid" else "--",
                marker="o", markersize=3, label=f"{arm} (n={cells[0]['n']})")
        ax.fill_between(xs, [max(style.finite(c["lo"], c["mean"]), 1e-12) for c in cells],
                        [style.finite(c["hi"], c["mean"]) for c in cells], color=color(norm), alpha=0.15, lw=0)
    ax.set_yscale("log")
    n_layers = max((len(c) for c in flow.get("layers", {}).values()), default=0)
    ax.set_xticks(range(n_layers), ["1st"] + [str(i + 1) for i in range(1, n_layers - 1)] + ["classifier"]
                  if n_layers > 1 else [])
    ax.set_xlabel("weight layer (input to output)")
    ax.set_ylabel("||dL/dW|| (log scale)")
    ratio = flow.get("ratio")
    ax.set_title("(c) gradient flow: per-layer gradient norms\n"
                 + (f"first/last, no BN / BN (sigmoid): {ratio['text']}" if ratio else "first/last: not measured"))
    legend(ax)


def c4(result: Result):
    n = result.numbers
    fig, gs = _frame(result, 16, 5.5, (1, 3), test_width=0.9)
    a, b = fig.add_subplot(gs[0, 0]), fig.add_subplot(gs[0, 1])
    P.percentiles(a, n["percentiles"]["no BN"], "no BN", "(a) without BN")
    P.percentiles(b, n["percentiles"]["BN"], "BN", "(b) with BN")
    style.share_y(a, b)
    b.set_ylabel("")
    legend(b)
    d = fig.add_subplot(gs[0, 2])
    P.arm_dots(d, n["arms"], 1.0, "", "probe drift (range / spread)")
    d.set_title(f"(c) drift per arm; ratio BN / no BN\n{n['ratio']['text']}")
    P.caption(fig, result, ["BN", "no BN"], "The paper gives no number; its Fig. 1(b, c) shows the no-BN percentiles "
             "wandering and the BN ones steady. (a) and (b) share y.")
    return fig


def c5(result: Result):
    n = result.numbers
    fig, gs = _frame(result, 16, 5.8, (1, 2), test_width=1.0)
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


def c6(result: Result):
    n = result.numbers
    key = n.get("init_key", "model.init_std").split(".")[-1]
    fig, gs = _frame(result, 16, 5.8, (1, 2), test_width=1.0)
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


def c7(result: Result):
    n = result.numbers
    fig, gs = _frame(result, 16, 6, (1, 2), test_width=0.9)
    a = fig.add_subplot(gs[0, 0])
    pts, sizes = [], []
    for norm, cells in n["error"].items():
        xs = sorted((float(g), cell) for g, cell in cells.items() if g != "None")
        sizes += [x for x, _ in xs]
        if len(xs) > 1:
            pts += P.lines(a, {norm: xs})
        else:
            for x, cell in xs:  # GN, LN: statistics never use the batch; one run set at the whole batch
                pts.append(dot(a, x, cell, col=color(norm), marker="s", label=f"{norm} (n={cell['n']}; any batch)"))
                a.axhline(100 * cell["mean"], color=color(norm), ls=":", lw=1)
    all_sizes = sorted(set(sizes) | set(PAPER_C7["BN"]))
    a.set_xscale("log", base=2)
    a.set_xticks(all_sizes, [f"{x:g}" for x in all_sizes])
    a.minorticks_off()
    a.set_xlabel("examples per normalization batch (log 2)")
    zoom(a, pts, label="ours: test error (%), 1 - score")
    a.set_title(f"(a) ours ({n.get('data', 'digits')})")
    legend(a)
    p = fig.add_subplot(gs[0, 1], sharex=a)
    ppts = []
    for norm, table in PAPER_C7.items():
        xs = sorted(table)
        if len(xs) > 1:
            p.plot(xs, [table[x] for x in xs], color=color(norm), lw=1, alpha=0.6)
        for i, x in enumerate(xs):
            paper(p, x, table[x], label=f"paper: {norm}" if i == 0 else "_", markeredgecolor=color(norm))
            ppts.append((x, table[x], table[x], table[x]))
    zoom(p, ppts, label="paper: top-1 error (%)")
    p.set_xlabel("images per GPU (log 2)")
    p.set_title("(b) paper (Group Norm, ResNet-50 ImageNet), its own y range")
    legend(p)
    P.caption(fig, result, list(n["error"]) + ["GN", "LN", "Batch Renorm"],
             "Dotted lines: a norm whose statistics never use the batch, run once, drawn across every size.")
    return fig


def c8(result: Result):
    cells = result.numbers["cells"]
    stress = set(result.numbers.get("stress_cells", []))
    fig, gs = _frame(result, 5 + 3.6 * len(cells), 6, (1, len(cells)), test_width=1.3)
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
        ax.set_title(f"({chr(97 + i)}) {style.wrap(setting, 40)}\n[{mark}]")
        axes.append(ax)
    zoom(axes[0], pts, label="final test accuracy (%)")
    for ax in axes[1:]:
        ax.set_ylabel("")
    legend(axes[-1])
    P.caption(fig, result, variants, "Panels share y. The paper's claim is qualitative (no number to draw).")
    return fig


def c9(result: Result):
    n = result.numbers
    fig, gs = _frame(result, 15, 5.6, (1, 2), test_width=1.0)
    a, b = fig.add_subplot(gs[0, 0]), fig.add_subplot(gs[0, 1])
    P.arm_dots(a, n["arms"], ylabel="score, test accuracy (%)")
    a.set_title("(a) score per arm")
    P.arm_dots(b, n["drift"], 1.0, "", "probe drift (range / spread)")
    b.set_title(f"(b) drift of the probed input ({n.get('probe', '')})")
    P.caption(fig, result, list(n["arms"]), "The paper's claim is qualitative (no number to draw).")
    return fig


def c10(result: Result):
    n = result.numbers
    fig, gs = _frame(result, 16, 6, (1, 2), ratios=[1.3, 1], test_width=1.0)
    a, b = fig.add_subplot(gs[0, 0]), fig.add_subplot(gs[0, 1])
    series = P.by_norm(n["arms"], P.parse_lr)
    pts = P.lines(a, series, dodge=1.08)
    P.log_x(a, [x for v in series.values() for x, _ in v], "learning rate multiplier (LR x)")
    a.axvline(n["small_lr_mult"], color="black", ls=":", lw=1, label=f"smallest shared LR x{n['small_lr_mult']:g}")
    order = list(series)
    for norm, lr in n["best_lr_mult"].items():
        cell = n["arms"].get(f"{norm}, x{lr:g}")
        if cell and norm in order:  # on the dodged x of its norm's dots
            x = lr * 1.08 ** (order.index(norm) - (len(order) - 1) / 2)
            a.plot([x], [100 * cell["mean"]], marker="*", markersize=13, color=color(norm), linestyle="none",
                   markeredgecolor="black", label=f"{norm}'s best LR (validation): x{lr:g}")
    zoom(a, pts, label="score, test accuracy (%)")
    a.set_title("(a) score per learning rate")
    legend(a)
    gap = n["gap"]
    names = {"small": f"at the smallest LR x{n['small_lr_mult']:g}", "best": "at each arm's best LR"}
    gpts = [dot(b, i, gap[k], col="black") for i, k in enumerate(("small", "best")) if k in gap]
    margin = next((c["threshold"] for c in result.checks if c["key"] == "small_same"), None)
    if margin:
        b.axhspan(-100 * margin, 100 * margin, color="0.85", zorder=0, label=f"+-{100 * margin:g} point margin")
        gpts.append((0, -100 * margin, -100 * margin, 100 * margin))
    b.axhline(0, color="black", lw=0.8)
    style.categories(b, [names[k] for k in ("small", "best") if k in gap], 18)
    zoom(b, gpts, " points", label="BN - no BN score (points)")
    b.set_title("(b) BN's advantage")
    legend(b)
    P.caption(fig, result, ["BN", "no BN"], "The paper's claim is qualitative (no number to draw). A diverged run "
             "scores 0 (drawn as v below the axis when off the range).")
    return fig


def generic(result: Result):
    fig, gs = _frame(result, 12, 5.5, (1, 1))
    ax = fig.add_subplot(gs[0, 0])
    P.arm_dots(ax, result.numbers["arms"], ylabel="score, test accuracy (%)")
    P.caption(fig, result)
    return fig


FIGURES = {"fig1": fig1, "C1": c1, "C2": c2, "C3": c3, "C4": c4, "C5": c5, "C6": c6, "C7": c7, "C8": c8,
           "C9": c9, "C10": c10}


def render(result: Result):
    """The claim's Figure (legible ticks), or None when it was not judged (not run, or refused before any number)."""
    if result.verdict == NOT_RUN or not result.checks:
        return None
    fig = FIGURES.get(result.id, generic)(result)
    style.figure_legend(fig)
    style.untangle(fig)
    return fig


def draw(result: Result, out: Path) -> Path | None:
    """Render the claim's figure and save it as <out>/<id>.png."""
    fig = render(result)
    if fig is None:
        return None
    path = Path(out) / f"{result.id.lower()}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


from bnrepro.report import why  # noqa: E402  (its figures build on the helpers above)

FIGURES.update(why.FIGURES)  # C11-C15: bnrepro/report/why/
