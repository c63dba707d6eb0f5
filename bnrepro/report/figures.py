"""One PNG per claim, readable without the report: titles, axis labels, legends, the paper's numbers beside ours."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bnrepro.report.claims import (  # noqa: E402
    LADDER, PAPER_LADDER_STEPS, Result, best_acc, drift, final_acc, init_key, norm_batch, train_test_gap, varying_keys)
from bnrepro.report.runs import Run, Stat, group, mean_curve  # noqa: E402

PER_EXAMPLE_NORMS = ("gn", "ln", "in")
# one color per normalization in every figure, so "ours" and "paper" panels read alike
NORM_COLOR = {"bn": "C0", "ghost_bn": "C0", "gn": "C1", "ln": "C2", "brn": "C3", "none": "C7", "noisy_bn": "C4",
              "in": "C5"}
NORM_LABEL = {"bn": "BN", "none": "no BN", "noisy_bn": "noisy BN", "ghost_bn": "BN (ghost)", "gn": "GN", "ln": "LN",
              "brn": "Batch Renorm", "in": "IN"}
PAPER_GN = {"BN": {32: 23.6, 16: 23.7, 8: 24.8, 4: 27.3, 2: 34.7}, "GN": {32: 24.1, 16: 24.2, 8: 24.0, 4: 24.2, 2: 24.1}}


def label(norm) -> str:
    return NORM_LABEL.get(norm, str(norm))


def _finish(fig, result: Result, out: Path) -> Path:
    fig.suptitle(f"{result.id}: {result.title}\nverdict: {result.verdict}", fontsize=11)
    fig.tight_layout()
    path = out / f"{result.id.lower()}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _curves(ax, groups: dict[str, list[Run]], key: str = "test_acc", ylabel: str = "test accuracy") -> None:
    for name, runs in groups.items():
        steps, mean, std = mean_curve(runs, key)
        if len(steps):
            line, = ax.plot(steps, mean, label=f"{name} (n={len(runs)})")
            ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("training steps")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _percentiles(ax, runs: list[Run], title: str) -> None:
    for q, style in ((15, ":"), (50, "-"), (85, "--")):
        steps, mean, _ = mean_curve(runs, f"probe_p{q}")
        if len(steps):
            ax.plot(steps, mean, style, color="k", label=f"{q}th percentile")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("training steps")
    ax.set_ylabel("input to one sigmoid (last hidden layer)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _by(runs: list[Run], key: str) -> dict:
    out: dict = {}
    for run in runs:
        out.setdefault(run.get(key), []).append(run)
    return out


def _errorbar_lines(ax, stats: dict[tuple, Stat], xlabel: str, ylabel: str, scale: float = 1.0) -> None:
    """stats keyed by (series, x): one line per series with mean ± std error bars."""
    for series in sorted({s for s, _ in stats}, key=str):
        xs = sorted(x for s, x in stats if s == series)
        ys = [stats[(series, x)] for x in xs]
        ax.errorbar(xs, [scale * y.mean for y in ys], yerr=[scale * y.std for y in ys], marker="o", capsize=3,
                    label=label(series), color=NORM_COLOR.get(series))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _bars(ax, stats: dict[tuple, Stat], ylabel: str, scale: float = 1.0) -> None:
    """stats keyed by (group, series): grouped bars with std error bars and the mean written on each bar."""
    groups = list(dict.fromkeys(g for g, _ in stats))  # callers pass stats in a meaningful order
    series = sorted({s for _, s in stats}, key=str)
    width = 0.8 / max(len(series), 1)
    for i, s in enumerate(series):
        xs = [j + i * width for j, g in enumerate(groups) if (g, s) in stats]
        ys = [stats[(g, s)] for g in groups if (g, s) in stats]
        bars = ax.bar(xs, [scale * y.mean for y in ys], width, yerr=[scale * y.std for y in ys], capsize=3,
                      label=label(s))
        ax.bar_label(bars, labels=[f"{scale * y.mean:.3g}" for y in ys], fontsize=7)
    ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(groups))], [label(g) for g in groups])
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)


def fig1(result: Result, out: Path) -> Path:
    by_norm = _by(result.runs, "model.norm")
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.5))
    _curves(axes[0], {label(n): rs for n, rs in by_norm.items()})
    axes[0].set_title("(a) test accuracy", fontsize=10)
    _percentiles(axes[1], by_norm.get("none", []), "(b) without BN: p15 / p50 / p85")
    _percentiles(axes[2], by_norm.get("bn", []), "(c) with BN: p15 / p50 / p85")
    steps_to = result.numbers.get("steps_to", {})
    targets = sorted({t for cells in steps_to.values() for t in cells}, key=float)
    norms = sorted(steps_to)
    cells = [[_steps_cell(steps_to[n].get(t)) for n in norms] for t in targets]
    axes[3].axis("off")
    if cells:
        table = axes[3].table(cellText=cells, rowLabels=[f"to {float(t):.0%}" for t in targets],
                              colLabels=[label(n) for n in norms], loc="center")
        table.scale(1, 1.4)
    axes[3].set_title("steps to target accuracy (mean ± std, reached/n)\n"
                      "paper: BN reaches higher accuracy faster (Fig. 1a)", fontsize=10)
    return _finish(fig, result, out)


def _steps_cell(cell: dict | None) -> str:
    if not cell or cell["mean"] is None:
        return f"not reached (0/{cell['n'] if cell else 0})"
    return f"{cell['mean']:,.0f} ± {cell['std']:,.0f} ({cell['reached']}/{cell['n']})"


def c1(result: Result, out: Path) -> Path:
    rows, target = result.numbers["ladder"], result.numbers["target"]
    variants = [v for v in LADDER if v in rows]
    groups = {f"{v}: {_speed(rows[v]['speedup'])}": [r for r in result.runs if r.get("variant") == v] for v in variants}
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.8))
    _curves(axes[0], groups)
    axes[0].axhline(target, color="gray", ls="--", lw=1, label=f"target {target:.1%} (Inception's best)")
    axes[0].legend(fontsize=8)
    axes[0].set_title("test accuracy of the ladder (legend: speed-up to the target)", fontsize=10)
    paper = {v: PAPER_LADDER_STEPS["Inception"] / s for v, s in PAPER_LADDER_STEPS.items()}
    xs = np.arange(len(variants))
    ours = [rows[v]["speedup"] or 0.0 for v in variants]
    axes[1].bar(xs - 0.2, ours, 0.4, label="ours")
    axes[1].bar(xs + 0.2, [paper.get(v, 0.0) for v in variants], 0.4, label="paper (ImageNet)")
    for x, v in zip(xs, variants):
        if rows[v]["speedup"] is None:
            axes[1].text(x - 0.2, 0.05, "not\nreached", ha="center", fontsize=7, color="red")
        if v not in paper:
            axes[1].text(x + 0.2, 0.05, "never\n(max 69.8%)", ha="center", fontsize=7, color="red")
    axes[1].set_xticks(xs, variants, fontsize=8)
    axes[1].set_ylabel("speed-up vs Inception (steps to target)")
    axes[1].set_yscale("symlog", linthresh=1)
    axes[1].grid(alpha=0.3, axis="y")
    axes[1].legend(fontsize=8)
    axes[1].set_title("speed-up: ours vs the paper's 31.0e6 / steps", fontsize=10)
    return _finish(fig, result, out)


def _speed(speedup) -> str:
    return "target not reached" if speedup is None else f"{speedup:.1f}x"


def c2(result: Result, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    _errorbar_lines(ax, group(result.runs, ("model.norm", "optim.lr_mult"), best_acc),
                    "learning-rate multiplier (x base LR)", "best test accuracy (diverged run = 0)")
    ax.set_xscale("log")
    for (norm, lr), n in _counts(result.runs, lambda r: r.diverged).items():
        ax.scatter([lr], [0], marker="x", s=80, color="red", zorder=5)
        ax.annotate(f"{label(norm)}: {n} diverged", (lr, 0), textcoords="offset points", xytext=(5, 8 + 10 * (norm == "bn")),
                    fontsize=7, color="red")
    ax.set_title("paper: no-BN Inception diverges at x5; BN-x30 trains (74.8%)", fontsize=9)
    return _finish(fig, result, out)


def _counts(runs: list[Run], pred) -> dict[tuple, int]:
    counts: dict[tuple, int] = {}
    for run in runs:
        if pred(run):
            key = (run.get("model.norm"), run.get("optim.lr_mult"))
            counts[key] = counts.get(key, 0) + 1
    return counts


def c3(result: Result, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.8))
    _bars(ax, group(result.runs, ("model.act", "model.norm"), best_acc), "best test accuracy (%)", 100)
    ax.set_title("paper: BN-x5-Sigmoid 69.8%; sigmoid without BN never exceeded 0.1%", fontsize=9)
    return _finish(fig, result, out)


def c4(result: Result, out: Path) -> Path:
    by_norm = _by(result.runs, "model.norm")
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    _percentiles(axes[0], by_norm.get("none", []), "without BN: p15 / p50 / p85")
    _percentiles(axes[1], by_norm.get("bn", []), "with BN: p15 / p50 / p85")
    _bars(axes[2], {(n, "drift"): s for (n,), s in group(result.runs, ("model.norm",), drift).items()},
          "drift (range of percentiles / spread)")
    axes[2].set_title("probe drift after the first 10% of training (lower = more stable)", fontsize=9)
    return _finish(fig, result, out)


def c5(result: Result, out: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    _errorbar_lines(axes[0], group(result.runs, ("model.norm", "model.dropout"), final_acc), "dropout rate",
                    "final test accuracy (%)", 100)
    _errorbar_lines(axes[1], group(result.runs, ("model.norm", "model.dropout"), train_test_gap), "dropout rate",
                    "train - test accuracy (points)", 100)
    axes[0].set_title("paper: BN-x5 drops dropout with no loss of accuracy", fontsize=9)
    axes[1].set_title("train-test gap (smaller = more regularized)", fontsize=9)
    return _finish(fig, result, out)


def c6(result: Result, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    key = init_key(result.runs)
    _errorbar_lines(ax, group(result.runs, ("model.norm", key), final_acc), key,
                    "final test accuracy (%)", 100)
    ax.set_xscale("log")
    spread = result.numbers.get("spread", {})
    ax.set_title("spread over init scales: " + ", ".join(f"{label(n)} {100 * s:.1f} points" for n, s in spread.items()),
                 fontsize=9)
    return _finish(fig, result, out)


def c7(result: Result, out: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.8))
    error = {}
    for run in result.runs:
        if final_acc(run) is not None:
            error.setdefault((run.get("model.norm"), norm_batch(run)), []).append(1 - final_acc(run))
    error = {key: Stat(tuple(values)) for key, values in error.items()}
    # GN and LN never use batch statistics, so the sweep runs them once: a flat band (mean ± std) across the sizes
    flat = {n: s for (n, _), s in error.items() if n in PER_EXAMPLE_NORMS}
    _errorbar_lines(axes[0], {k: s for k, s in error.items() if k[0] not in flat},
                    "examples per normalization batch (total batch fixed)", "final test error (%)", 100)
    for (norm, stat), style in zip(sorted(flat.items()), ("--", ":", "-.")):
        color = NORM_COLOR.get(norm)
        axes[0].axhline(100 * stat.mean, color=color, linestyle=style, linewidth=2,
                        label=f"{label(norm)} (no batch statistics)")
        axes[0].axhspan(100 * (stat.mean - stat.std), 100 * (stat.mean + stat.std), color=color, alpha=0.12)
    axes[0].legend(fontsize=8)
    axes[0].set_xscale("log", base=2)
    axes[0].set_title("ours", fontsize=10)
    for name, table in PAPER_GN.items():
        xs = sorted(table)
        axes[1].plot(xs, [table[x] for x in xs], marker="o", label=name, color=NORM_COLOR[name.lower()])
        for x in xs:
            axes[1].annotate(f"{table[x]}", (x, table[x]), textcoords="offset points", xytext=(0, 5), fontsize=7)
    axes[1].scatter([32], [25.3], marker="s", label="LN (at 32)", color=NORM_COLOR["ln"])
    axes[1].scatter([4], [26.3], marker="^", label="Batch Renorm (at 4)", color=NORM_COLOR["brn"])
    axes[1].set_xscale("log", base=2)
    axes[1].set_xlabel("images per GPU")
    axes[1].set_ylabel("top-1 error (%)")
    axes[1].set_title("paper (Group Norm, ResNet-50 ImageNet)", fontsize=10)
    axes[1].grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    return _finish(fig, result, out)


def c8(result: Result, out: Path) -> Path:
    table = result.numbers.get("final_eval", {})
    stats = {(setting, variant): Stat(tuple(cell["values"])) for setting, cells in table.items()
             for variant, cell in cells.items()}
    fig, ax = plt.subplots(figsize=(max(7, 2.5 * len(table)), 4.8))
    _bars(ax, stats, "final test accuracy (%)", 100)
    ax.set_xlabel(", ".join(varying_keys(result.runs)) or "setting")
    ax.set_title("EMA vs precise BN vs test-time batch statistics (paper: precise BN is better and stabler)", fontsize=9)
    return _finish(fig, result, out)


def c9(result: Result, out: Path) -> Path:
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    _bars(axes[0], {("best acc", n): s for (n,), s in group(result.runs, ("model.norm",), best_acc).items()},
          "best test accuracy (%)", 100)
    _bars(axes[1], {("drift", n): Stat(tuple(s["values"])) for n, s in result.numbers["drift"].items()},
          f"probe drift (range / spread), {result.numbers['probe']}")
    _curves(axes[2], {label(n): rs for n, rs in _by(result.runs, "model.norm").items()})
    axes[0].set_title("paper: noisy BN trains about as well as BN", fontsize=9)
    axes[1].set_title("...although its distributions are less stable", fontsize=9)
    return _finish(fig, result, out)


def c10(result: Result, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    acc = group(result.runs, ("optim.lr_mult", "model.norm"), best_acc)
    _bars(ax, {(f"x{lr}", n): s for (lr, n), s in acc.items()}, "best test accuracy (%)", 100)
    ax.set_xlabel("learning-rate multiplier")
    ax.set_title("paper (Bjorck et al.): at a small LR, BN and no BN reach similar accuracy", fontsize=9)
    return _finish(fig, result, out)


FIGURES = {"fig1": fig1, "C1": c1, "C2": c2, "C3": c3, "C4": c4, "C5": c5, "C6": c6, "C7": c7, "C8": c8,
           "C9": c9, "C10": c10}


def draw(result: Result, out: Path) -> Path | None:
    """The claim's figure, or None when it has no runs to draw."""
    if not result.runs or (result.verdict == "not run"):
        return None
    return FIGURES[result.id](result, out)
