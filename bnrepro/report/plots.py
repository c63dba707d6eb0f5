"""The report's plotting helpers, shared by every claim's figure (the modules of bnrepro/claims/ and
figures.generic): the frame every figure has (the data panels, the rule's tests column, the verdict as
title), its caption, and the panels several claims draw (lines over an LR axis, dots per arm, percentile bands).
House style (colours, fonts, zoom) is style.py's."""
from __future__ import annotations

import math
import re

from bnrepro.report import style
from bnrepro.report.judging import Result
from bnrepro.report.style import color, dot, legend, paper, zoom

CI = "error bars and bands: 95% intervals over seeds (Student t); n = seeds per arm"


def parse_lr(key: str) -> tuple[str, float]:
    """'BN, x30' -> ('BN', 30.0): the judges' arm keys (bnrepro/claims/ formats them)."""
    m = re.fullmatch(r"(.*), x([0-9.eE+-]+)", key)
    return (m[1], float(m[2])) if m else (key, math.nan)


def parse_after(key: str, word: str) -> tuple[str, float]:
    """'BN, dropout 0.4' -> ('BN', 0.4)."""
    m = re.fullmatch(rf"(.*), {word} ([0-9.eE+-]+)", key)
    return (m[1], float(m[2])) if m else (key, math.nan)


def by_norm(arms: dict, parse) -> dict[str, list[tuple[float, dict]]]:
    out: dict[str, list] = {}
    for key, cell in arms.items():
        norm, x = parse(key)
        out.setdefault(norm, []).append((x, cell))
    return {n: sorted(v, key=lambda t: t[0]) for n, v in out.items()}


def log_x(ax, xs, label: str) -> None:
    xs = sorted(set(xs))
    ax.set_xscale("log")
    ax.set_xticks(xs, [f"x{x:g}" if "LR" in label else f"{x:g}" for x in xs])
    ax.minorticks_off()
    ax.set_xlim(xs[0] / 1.6, xs[-1] * 1.6)
    ax.set_xlabel(label)


def lines(ax, series: dict[str, list[tuple[float, dict]]], scale: float = 100.0, dodge: float = 1.0):
    """Mean +- 95% interval per x for each norm, joined by a line; returns the plotted points for zoom. dodge > 1
    spreads the norms apart by that factor on a log x axis, so error bars at one x do not hide each other."""
    pts = []
    k = len(series)
    for j, (norm, cells) in enumerate(series.items()):
        c = color(norm)
        shift = dodge ** (j - (k - 1) / 2)
        xs = [x * shift for x, _ in cells]
        ax.plot(xs, [scale * cell["mean"] for _, cell in cells], color=c, lw=1, alpha=0.6)
        for i, (x, (_, cell)) in enumerate(zip(xs, cells)):
            pts.append(dot(ax, x, cell, scale, col=c, label=f"{norm} (n={cell['n']})" if i == 0 else None))
    return pts


def arm_dots(ax, arms: dict, scale: float = 100.0, unit: str = "%", ylabel: str = "", width: int = 12,
              floor: float | None = None):
    names = list(arms)
    pts = [dot(ax, i, arms[n], scale, col=color(n)) for i, n in enumerate(names)]
    style.categories(ax, [f"{n}\n(n={arms[n]['n']})" for n in names], width)
    zoom(ax, pts, unit, label=ylabel, floor=floor)
    return pts


def percentiles(ax, pcts: dict, name: str, title: str) -> None:
    """The 15/50/85th percentiles of the probed sigmoid input: mean over seeds and 95% band."""
    for q, ls in ((85, "--"), (50, "-"), (15, ":")):
        c = pcts.get(q) or pcts.get(str(q))
        if c and c["steps"]:
            ax.plot(c["steps"], c["mean"], ls, color=color(name), label=f"{q}th percentile",
                    marker="o" if len(c["steps"]) < 5 else None, markersize=3)
            ax.fill_between(c["steps"], c["lo"], c["hi"], color=color(name), alpha=0.15, lw=0)
    ax.set_title(title)
    ax.set_xlabel("training steps")
    ax.set_ylabel("input to one sigmoid (last hidden layer)")


def tests_panel(fig, spec, result: Result, marks: dict | None = None) -> None:
    """The rule's tests, one small axis per unit: each interval, its threshold(s) dashed, coloured by outcome;
    marks, {test key: (value, label)}: the paper's value of a tested quantity, drawn beside it."""
    checks = result.checks  # a test whose number could not be measured is a row that says so
    units = list(dict.fromkeys(c["unit"] for c in checks)) or ["points"]
    sub = spec.subgridspec(len(units), 1, height_ratios=[max(1, sum(c["unit"] == u for c in checks)) for u in units])
    marks = marks or {}
    for row, unit in enumerate(units):
        ax = fig.add_subplot(sub[row])
        mine = [c for c in checks if c["unit"] == unit]
        scale = 100.0 if unit == "points" else 1.0
        xs, zeros = [], []
        for i, c in enumerate(mine):
            iv = c["interval"]
            if c["key"] in marks:
                value, text = marks[c["key"]]
                paper(ax, value, i, label=text)
                xs.append(value)
            if iv is None or not math.isfinite(iv["mean"]):
                ax.text(0.5, i, "not measured (unclear)", transform=ax.get_yaxis_transform(), ha="center",
                        va="center", fontsize=style.FONT["tick"], color=style.OUTCOME_COLORS["unclear"])
                xs += [scale * c["threshold"]]
                continue
            mean = scale * iv["mean"]
            lo, hi = scale * style.finite(iv["lo"], iv["mean"]), scale * style.finite(iv["hi"], iv["mean"])
            if unit == "ratio" and mean <= 0:  # a speed-up of 0: the arm never reached the target
                zeros.append((i, c))
                xs += [scale * c["threshold"]]
                continue
            ax.errorbar([mean], [i], xerr=[[mean - lo], [hi - mean]], fmt="o",
                        color=style.OUTCOME_COLORS.get(c["outcome"], "0.5"), capsize=4)
            limits = (-c["threshold"], c["threshold"]) if c["kind"] == "equivalent" else (c["threshold"],)
            for t in limits:
                ax.plot([scale * t] * 2, [i - 0.35, i + 0.35], "k--", lw=1)
            xs += [lo, hi, *(scale * t for t in limits)]
        ax.set_yticks(range(len(mine)), [f"[{c['key']}] {c['role']}\n{c['outcome']}" for c in mine])
        ax.set_ylim(len(mine) - 0.4, -0.6)
        if unit == "ratio":
            ax.set_xscale("log")
            ax.set_xlim(min(xs) / 1.5, max(xs) * 1.5)
            style.ratio_axis(ax.xaxis)
            for i, c in zeros:
                ax.plot([0.0], [i], marker="<", color=style.OUTCOME_COLORS.get(c["outcome"], "0.5"),
                        transform=ax.get_yaxis_transform(), clip_on=False, linestyle="none")
                ax.text(0.03, i, "0x: never reached", transform=ax.get_yaxis_transform(), va="center",
                        fontsize=style.FONT["tick"])
        else:
            pad = 0.15 * (max(xs) - min(xs) or 1.0)  # the thresholds are always in xs
            ax.set_xlim(min(xs) - pad, max(xs) + pad)
        ax.set_xlabel({"points": "difference (points)", "ratio": "ratio (log scale)"}.get(unit, "value"))
        ax.grid(False, axis="y")
        if row == 0:
            ax.set_title("the rule's tests, 95% intervals\ngreen holds, red fails, grey unclear;\n"
                         "dashed: the threshold (holds on the\nclaim's side, fails on the other)")
        legend(ax)


def frame(result: Result, width: float, height: float, grid: tuple[int, int], ratios=None, test_width: float = 1.0,
          marks: dict | None = None):
    """Figure, its data gridspec (rows x cols) and the tests column's spec (marks: see tests_panel)."""
    fig = style.figure(width, height)
    rows, cols = grid
    gs = fig.add_gridspec(rows, cols + 1, width_ratios=list(ratios or [1] * cols) + [test_width])
    tests_panel(fig, gs[:, -1], result, marks)
    verdict = f"verdict: {result.verdict} ({result.deciding})"
    fig.suptitle(f"{result.id}: {result.title}\n{style.wrap(verdict, 150)}", fontsize=style.FONT["suptitle"])
    return fig, gs


def caption(fig, result: Result, names=(), extra: str = "") -> None:
    parts = [f"Paper: {result.paper}."]
    if extra:
        parts.append(extra)
    names_text = style.explain(names)
    if names_text:
        parts.append(f"Arms: {names_text}.")
    parts.append(CI + ".")
    style.caption(fig, "\n".join(parts))


def diverged_notes(ax, diverged: dict, arms: dict, y: float, sep: str = " ") -> None:
    """'k/n diverged' under each LR arm (key 'BN, x30') where k of its n seeds diverged, at height y (axes
    fraction), in the norm's colour."""
    for key, k in diverged.items():
        if k:
            norm, lr = parse_lr(key)
            ax.annotate(f"{k}/{arms[key]['n']}{sep}diverged", (lr, y), xycoords=("data", "axes fraction"),
                        ha="center", fontsize=style.FONT["tick"], color=color(norm))
