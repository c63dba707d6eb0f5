"""One PNG per claim, drawn only from the judge's numbers (Result.numbers and Result.checks), never from the runs,
so a figure and its verdict cannot group runs differently. Intervals are 95% intervals drawn as error bars.
Plain on purpose: a later issue restyles them."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bnrepro.report.claims import PAPER_C1, PAPER_C7, Result  # noqa: E402
from bnrepro.report.rules import FAILS, HOLDS, NOT_RUN  # noqa: E402

OUTCOME_COLOR = {HOLDS: "C2", FAILS: "C3"}  # unclear: gray


def _finish(fig, result: Result, out: Path) -> Path:
    fig.suptitle(f"{result.id}: {result.title}\nverdict: {result.verdict} ({result.deciding})", fontsize=10)
    fig.tight_layout()
    path = out / f"{result.id.lower()}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _yerr(cells: list[dict], scale: float) -> list[list[float]]:
    """Asymmetric error bars from each cell's 95% interval (none where the interval is infinite, n < 2)."""
    low = [scale * (c["mean"] - c["lo"]) if math.isfinite(c["lo"]) else 0.0 for c in cells]
    high = [scale * (c["hi"] - c["mean"]) if math.isfinite(c["hi"]) else 0.0 for c in cells]
    return [low, high]


def _arms(ax, arms: dict[str, dict], ylabel: str, scale: float = 100.0) -> None:
    """Bars of each arm's mean with its 95% interval and n."""
    names = list(arms)
    cells = [arms[n] for n in names]
    xs = range(len(names))
    ax.bar(xs, [scale * c["mean"] for c in cells], yerr=_yerr(cells, scale), capsize=3, color="C0", alpha=0.7)
    ax.set_xticks(list(xs), [f"{n}\nn={c['n']}" for n, c in zip(names, cells)], fontsize=7, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, axis="y")


def _tests(ax, result: Result) -> None:
    """Each tested interval (95%), its threshold (dashed) and outcome (green holds, red fails, gray unclear)."""
    checks = [c for c in result.checks if c["interval"] is not None]
    for i, c in enumerate(checks):
        iv = c["interval"]
        scale = 100.0 if c["unit"] == "points" else 1.0
        lo = iv["lo"] if math.isfinite(iv["lo"]) else iv["mean"]
        hi = iv["hi"] if math.isfinite(iv["hi"]) else iv["mean"]
        color = OUTCOME_COLOR.get(c["outcome"], "0.5")
        ax.errorbar([scale * iv["mean"]], [i], xerr=[[scale * (iv["mean"] - lo)], [scale * (hi - iv["mean"])]],
                    fmt="o", color=color, capsize=4)
        limit = c["threshold"]
        for t in ((-limit, limit) if c["kind"] == "equivalent" else (limit,)):
            ax.plot([scale * t] * 2, [i - 0.3, i + 0.3], "k--", lw=1)
    units = {"points": "points", "ratio": "ratio"}
    ax.set_yticks(range(len(checks)), [f"[{c['key']}] {c['role']}, {units.get(c['unit'], '')}\n{c['outcome']}"
                                       for c in checks], fontsize=7)
    ax.set_xlabel("tested interval; dashed: threshold")
    ax.grid(alpha=0.3)
    ax.set_title("the rule's tests (95% intervals)", fontsize=9)


def _curves(ax, curves: dict[str, dict], ylabel: str, scale: float = 100.0) -> None:
    for name, c in curves.items():
        if c["steps"]:
            line, = ax.plot(c["steps"], [scale * m for m in c["mean"]], label=name)
            ax.fill_between(c["steps"], [scale * v for v in c["lo"]], [scale * v for v in c["hi"]],
                            color=line.get_color(), alpha=0.2)
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlabel("training steps")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _percentiles(ax, pcts: dict, title: str) -> None:
    for q, style in (("15", ":"), ("50", "-"), ("85", "--")):
        c = pcts.get(q) or pcts.get(int(q))
        if c and c["steps"]:
            ax.plot(c["steps"], c["mean"], style, color="k", label=f"{q}th percentile")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("training steps")
    ax.set_ylabel("input to one sigmoid")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def fig1(result: Result, ax_row) -> None:
    n = result.numbers
    _curves(ax_row[0], n["curves"], "test accuracy (%)")
    ax_row[0].axhline(100 * n["target"], color="gray", ls=":", lw=1)
    ax_row[0].set_title(f"(a) test accuracy, mean and 95% interval; dotted: target {100 * n['target']:.1f}%", fontsize=9)
    _percentiles(ax_row[1], n["percentiles"]["no BN"], "(b) without BN")
    _percentiles(ax_row[2], n["percentiles"]["BN"], "(c) with BN")


def c1(result: Result, ax_row) -> None:
    ladder = result.numbers["ladder"]
    names = [v for v in ladder if ladder[v]["speedup"]]
    ax = ax_row[0]
    xs = range(len(names))
    cells = [ladder[v]["speedup"] for v in names]
    ax.bar([x - 0.2 for x in xs], [c["mean"] for c in cells], 0.4, yerr=_yerr(cells, 1.0), capsize=3, label="ours")
    ax.bar([x + 0.2 for x in xs], [PAPER_C1["speedup"].get(v, 0.0) for v in names], 0.4, label="paper (ImageNet)")
    ax.set_xticks(list(xs), [f"{v}\n{ladder[v]['reached']}/{ladder[v]['n']} reached" for v in names], fontsize=7)
    ax.set_yscale("symlog", linthresh=1)
    ax.set_ylabel("speed-up vs Inception (steps to target)")
    ax.legend(fontsize=8)
    ax.set_title(f"target {100 * result.numbers['target']:.1f}% ({result.numbers['split']} accuracy)", fontsize=9)
    _arms(ax_row[1], {v: row["score"] for v, row in ladder.items()}, "score: test accuracy (%)")


def c7(result: Result, ax_row) -> None:
    ax = ax_row[0]
    for norm, cells in result.numbers["error"].items():
        sizes = sorted(cells, key=lambda g: float(g) if g not in ("None",) else math.inf)
        xs = [float(g) for g in sizes if g != "None"]
        cs = [cells[g] for g in sizes if g != "None"]
        if len(xs) == 1:  # GN, LN: statistics never use the batch; one run set stands for every size
            ax.axhline(100 * cs[0]["mean"], ls="--", label=f"{norm} (no batch statistics)", color=f"C{len(ax.lines) + 1}")
        elif xs:
            ax.errorbar(xs, [100 * c["mean"] for c in cs], yerr=_yerr(cs, 100.0), marker="o", capsize=3, label=norm)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("examples per normalization batch")
    ax.set_ylabel("test error (%), 1 - score")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax.set_title("ours", fontsize=9)
    for name, table in PAPER_C7.items():
        xs = sorted(table)
        ax_row[1].plot(xs, [table[x] for x in xs], marker="o", label=name)
    ax_row[1].set_xscale("log", base=2)
    ax_row[1].set_xlabel("images per GPU")
    ax_row[1].set_ylabel("top-1 error (%)")
    ax_row[1].set_title("paper (Group Norm, ResNet-50 ImageNet)", fontsize=9)
    ax_row[1].legend(fontsize=7)
    ax_row[1].grid(alpha=0.3)


def c8(result: Result, ax_row) -> None:
    cells = result.numbers["cells"]
    flat = {f"{setting}\n{variant}": cell for setting, variants in cells.items() for variant, cell in variants.items()}
    _arms(ax_row[0], flat, "final test accuracy (%) per statistics estimator")
    ax_row[0].set_title("EMA, precise BN, Algorithm 2, test-time batch statistics per setting", fontsize=9)


def c4(result: Result, ax_row) -> None:
    _percentiles(ax_row[0], result.numbers["percentiles"]["no BN"], "without BN")
    _percentiles(ax_row[1], result.numbers["percentiles"]["BN"], "with BN")
    _arms(ax_row[2], result.numbers["arms"], "probe drift (range / spread)", 1.0)


def _extra_panels(result: Result) -> int:
    return {"fig1": 3, "C1": 2, "C4": 3, "C7": 2, "C8": 1}.get(result.id, 0)


EXTRA = {"fig1": fig1, "C1": c1, "C4": c4, "C7": c7, "C8": c8}


def draw(result: Result, out: Path) -> Path | None:
    """The claim's figure, or None when it was not judged (not run, or refused before any number)."""
    if result.verdict == NOT_RUN or not result.checks:
        return None
    extra = _extra_panels(result)
    has_arms = "arms" in result.numbers and result.id not in ("C4",)
    panels = extra + has_arms + 1
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4.5), squeeze=False)
    axes = list(axes[0])
    if extra:
        EXTRA[result.id](result, axes[:extra])
    if has_arms:
        _arms(axes[extra], result.numbers["arms"], "score: test accuracy (%)")
        axes[extra].set_title("each arm's score, mean and 95% interval", fontsize=9)
    _tests(axes[-1], result)
    return _finish(fig, result, out)


