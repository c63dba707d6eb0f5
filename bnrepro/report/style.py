"""The report's house style: one colour per norm / arm in every figure, font sizes, dot plots with 95% error bars,
the paper's numbers as hollow black diamonds labelled "paper ...", a zoom that sets the y range to where the
differences live (and says so), legends outside the data and tick labels that never overlap."""
from __future__ import annotations

import functools
import math
import textwrap

from bnrepro.norm import REGISTRY as NORMS  # each norm's label, colour and meaning

FONT = {"title": 9, "label": 8, "tick": 7, "legend": 7, "caption": 8, "suptitle": 10}


@functools.cache
def pyplot():
    """matplotlib.pyplot with the house style, imported on first use: the door imports this module (via the
    claims) in every job that has claim_params, which never draws."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": FONT["label"], "axes.titlesize": FONT["title"],
                         "axes.labelsize": FONT["label"], "xtick.labelsize": FONT["tick"],
                         "ytick.labelsize": FONT["tick"], "legend.fontsize": FONT["legend"], "axes.grid": True,
                         "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False})
    return plt


def __getattr__(name: str):
    if name == "plt":  # `from bnrepro.report.style import plt` (figures.py) imports it then
        return pyplot()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

# one colour per norm (and per arm family) across every figure; keys are lower-case labels or config names
COLORS = {  # besides each norm's own, registered with it (bnrepro/norm/), found by color() when asked
    # C1's ladder: Inception has no BN (grey); the BN rungs are blues, darker with the LR; sigmoid is purple-pink
    "inception": "#7f7f7f", "bn-baseline": "#6baed6", "bn-x5": "#1f77b4", "bn-x30": "#08306b",
    "bn-x5-sigmoid": "#e377c2",
    # C8's estimators of the population statistics
    "ema": "#7f7f7f", "precise": "#1f77b4", "precise_alg2": "#17becf", "batch": "#d62728",
}
EXPLAIN = {  # what each arm name means, for legends and captions (besides the norms' own, as for COLORS)
    "ema": "EMA of batch statistics (PyTorch's running mean/var)",
    "precise": "Wu & Johnson precise BN (population statistics over all recalibration batches)",
    "precise_alg2": "the paper's Algorithm 2 estimator (mean of batch means, m/(m-1) x mean of batch variances)",
    "batch": "test-time batch statistics",
    "Inception": "no BN, base LR", "BN-Baseline": "BN before every nonlinearity, base LR",
    "BN-x5": "BN + the 4.2.1 changes, 5x LR", "BN-x30": "as BN-x5, 30x LR", "BN-x5-Sigmoid": "BN-x5 with sigmoid",
}
OUTCOME_COLORS = {"holds": "#2ca02c", "fails": "#d62728", "unclear": "#7f7f7f"}
PAPER = dict(marker="D", markersize=7, markerfacecolor="none", markeredgecolor="black", markeredgewidth=1.3,
             linestyle="none")


def color(name) -> str:
    """The house colour of a norm, a ladder variant or an estimator; grey-blue for anything else."""
    # read when asked: a plugin's norm registers after this module is imported
    colors = {**{key: s.color for s in NORMS.values() if s.color for key in (s.name, s.label.lower())}, **COLORS}
    key = str(name).lower()
    if key in colors:
        return colors[key]
    for prefix in sorted(colors, key=len, reverse=True):  # "BN, x30" -> bn; "noisy BN (x1)" -> noisy bn
        if key.startswith(prefix + ",") or key.startswith(prefix + " ("):
            return colors[prefix]
    return "#17becf"


def explain(names) -> str:
    """'name = meaning; ...' for the arm names a caption must explain."""
    meaning = {**{s.label: s.about for s in NORMS.values() if s.about}, **EXPLAIN}
    return "; ".join(f"{n} = {meaning[n]}" for n in dict.fromkeys(names) if n in meaning)


def wrap(text: str, width: int = 14) -> str:
    return "\n".join(textwrap.wrap(str(text), width, break_long_words=False)) or str(text)


def figure(width: float, height: float):
    return pyplot().figure(figsize=(width, height), layout="constrained")


def finite(x: float, fallback: float) -> float:
    return x if x is not None and math.isfinite(x) else fallback


def dot(ax, x, cell: dict, scale: float = 100.0, *, label=None, col=None, marker="o", offset: float = 0.0):
    """One mean with its 95% interval as an error bar (no bar where n < 2: the interval is infinite)."""
    mean = scale * cell["mean"]
    lo, hi = scale * finite(cell["lo"], cell["mean"]), scale * finite(cell["hi"], cell["mean"])
    ax.errorbar([x + offset] if offset else [x], [mean], yerr=[[mean - lo], [hi - mean]], fmt=marker, color=col,
                capsize=3, markersize=5, label=label)
    return (x + offset if offset else x, mean, lo, hi)


def paper(ax, x, y, label: str = "paper", **kw):
    """The paper's number as a hollow black diamond; its label always starts with 'paper'."""
    assert label.startswith(("paper", "_")), label  # "_": a further marker of a series already labelled
    return ax.plot([x], [y], label=label, **{**PAPER, **kw})[0]


def zoom(ax, points, unit: str = "%", pad: float = 0.25, label: str | None = None, floor: float | None = None):
    """Set the y range to where the differences live. points: (x, mean, lo, hi). A low cluster far below the rest
    (a diverged or chance-level arm) is left out of the range and drawn as a 'v' at the bottom edge with its value,
    so it does not squash the rest. The range is stated in the y label."""
    pts = [p for p in points if p is not None and math.isfinite(p[1])]
    if not pts:
        return
    means = sorted(p[1] for p in pts)
    keep = pts
    if len(means) >= 3:
        gaps = [(means[i + 1] - means[i], i) for i in range(len(means) - 1)]
        gap, i = max(gaps)
        upper = [p for p in pts if p[1] > means[i]]
        lower = [p for p in pts if p[1] <= means[i]]
        span = 0.0 if not upper else max(p[3] for p in upper) - min(p[2] for p in upper)
        # cut only a lone low point or a cluster of seed-identical ones (diverged: 0): a low cluster whose own
        # differences have intervals (e.g. two arms both near chance, compared by the rule) stays in view
        lone = len(lower) == 1 or all(p[3] - p[2] <= 1e-9 * (1 + abs(p[1])) for p in lower)
        if upper and lone and i + 1 <= len(means) // 2 and gap > 3 * max(span, 0.05 * abs(means[-1])):
            keep = upper
    lo = min(p[2] for p in keep)
    hi = max(p[3] for p in keep)
    margin = max(pad * (hi - lo), 0.5 if unit in ("%", " points") else 0.05 * max(abs(hi), 1e-3))
    bottom, top = lo - margin, hi + margin
    floor = floor if floor is not None else 0.0 if unit in ("%", "") else None  # accuracies, errors, drifts >= 0
    if floor is not None:
        bottom = max(bottom, floor - margin / 4)
    if unit == "%":
        top = min(top, 100.0 + min(margin / 4, 1.0))
    ax.set_ylim(bottom, top)
    for x, mean, _, _ in pts:
        if mean < bottom:
            ax.plot([x], [bottom], marker="v", color="black", markersize=7, clip_on=False, linestyle="none")
            ax.annotate(f"{mean:.1f}{unit if unit == '%' else ''}", (x, bottom), xytext=(4, 4),
                        textcoords="offset points", fontsize=FONT["tick"], clip_on=False)
    if label is not None:
        out = " (v: below the axis, value shown)" if any(m < bottom for _, m, _, _ in pts) else ""
        ax.set_ylabel(f"{label}\naxis {bottom:.3g} to {top:.3g}{unit if unit == '%' else ''}{out}")


def ratio_axis(axis) -> None:
    """A log axis for ratios, labelled '2x': ticked at 1, 2, 5 x 10^k over up to two decades, else at 10^k.
    Call it after the limits are set."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    lo, hi = sorted(axis.get_view_interval())
    wide = lo > 0 and math.log10(hi / lo) > 2
    axis.set_major_locator(LogLocator(subs=(1.0,) if wide else (1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    axis.set_minor_formatter(NullFormatter())


def share_y(*axes) -> None:
    """One y range for panels that are compared: the union of their ranges, and joined for later changes."""
    lo = min(ax.get_ylim()[0] for ax in axes)
    hi = max(ax.get_ylim()[1] for ax in axes)
    first = axes[0]
    for ax in axes[1:]:
        ax.sharey(first)
    first.set_ylim(lo, hi)


def legend(ax, **kw):
    """Mark the axes' labelled artists for the figure legend (see figure_legend); nothing is drawn on the data."""
    return None


def figure_legend(fig, ncol: int = 2):
    """One legend for the whole figure, below the panels and outside every axes: labels de-duplicated (one colour
    per arm across the figure, so one entry serves every panel)."""
    seen = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    if seen:
        return fig.legend(list(seen.values()), list(seen), loc="outside lower right", ncol=min(ncol, len(seen)),
                          frameon=False)
    return None


def categories(ax, names, width: int = 12) -> None:
    """Category tick labels, wrapped (each line of a label on its own); rotated later only if they still overlap."""
    ax.set_xticks(range(len(names)), ["\n".join(wrap(part, width) for part in str(n).split("\n")) for n in names])
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.grid(False, axis="x")


def caption(fig, text: str, width: int | None = None) -> None:
    """The caption under the figure, at the left (kept inside the layout); the legend sits at its right."""
    width = width or int(7.5 * fig.get_figwidth())
    fig.supxlabel("\n".join(textwrap.fill(p, width) for p in text.split("\n")), fontsize=FONT["caption"],
                  ha="left", x=0.01)


def overlaps(labels, renderer) -> bool:
    boxes = [t.get_window_extent(renderer) for t in labels if t.get_visible() and t.get_text().strip()]
    return any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def visible_ticklabels(axis) -> list:
    """The tick labels matplotlib will draw (inside the view limits), major and minor."""
    lo, hi = sorted(axis.get_view_interval())
    labels = []
    for tick in axis.get_major_ticks() + axis.get_minor_ticks():
        if lo - 1e-9 * (abs(lo) + 1) <= tick.get_loc() <= hi + 1e-9 * (abs(hi) + 1) and tick.label1.get_visible():
            labels.append(tick.label1)
    return labels


def untangle(fig) -> None:
    """Make every axis's tick labels legible: drop minor labels, then rotate (x), shrink, thin, until none
    overlap. Every tangled axis takes its next step between two draws of the figure (a draw is what costs: one
    a round, not one per axis)."""
    from matplotlib.ticker import NullFormatter

    steps = {axis: 0 for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)}
    for _ in range(6):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        tangled = [axis for axis in steps if overlaps(visible_ticklabels(axis), renderer)]
        if not tangled:
            return
        for axis in tangled:
            step, steps[axis] = steps[axis], steps[axis] + 1
            if step == 0:
                axis.set_minor_formatter(NullFormatter())
            elif step == 1 and axis.axis_name == "x":
                for t in axis.get_ticklabels():
                    t.set_rotation(30)
                    t.set_ha("right")
                    t.set_rotation_mode("anchor")
            elif step in (1, 2, 3):
                for t in axis.get_ticklabels():
                    t.set_fontsize(max(5, t.get_fontsize() - 1))
            else:
                for i, t in enumerate(axis.get_ticklabels()):
                    t.set_visible(i % 2 == 0)
