"""Every figure, rendered from the synthetic suites of test_report.py (each claim's reproduced, not reproduced and
inconclusive case): no two tick labels on an axis overlap (matplotlib's text extents), the legend covers no
axes, the paper's numbers are drawn where the paper gives any, compared panels share y, arm names are
explained."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from bnrepro.report.figures import render
from tests.test_report import SUITES, judge

PAPER_NUMBERS = {"C1", "C2", "C3", "C5", "C7"}  # PAPER.md gives numbers for these; the rest are qualitative
SHARED = {"fig1": ("(b)", "(c)"), "C4": ("(a)", "(b)"), "C8": ("(a)", "(b)")}  # panels that must share y
CASES = ["reproduced", "not reproduced", "inconclusive"]


def tick_labels(axis) -> list:
    """The tick labels drawn: visible, non-empty, inside the view interval."""
    lo, hi = sorted(axis.get_view_interval())
    eps = 1e-9 * (abs(lo) + abs(hi) + 1)
    return [t.label1 for t in axis.get_major_ticks() + axis.get_minor_ticks()
            if lo - eps <= t.get_loc() <= hi + eps and t.label1.get_visible() and t.label1.get_text().strip()]


def overlapping_ticks(fig) -> list[str]:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    bad = []
    for ax in fig.axes:
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            labels = tick_labels(axis)
            boxes = [t.get_window_extent(renderer) for t in labels]
            for i, a in enumerate(boxes):
                for j in range(i + 1, len(boxes)):
                    if a.overlaps(boxes[j]):
                        bad.append(f"{ax.get_title()!r} {name}: {labels[i].get_text()!r} / {labels[j].get_text()!r}")
    return bad


def labels(fig) -> list[str]:
    out = [text.get_text() for legend in fig.legends for text in legend.get_texts()]
    for ax in fig.axes:
        out += ax.get_legend_handles_labels()[1]
    return out


def panel(fig, prefix: str):
    found = [ax for ax in fig.axes if ax.get_title().startswith(prefix)]
    assert found, f"no panel titled {prefix}..."
    return found[0]


def all_text(fig) -> str:
    """Every text of the figure, whitespace collapsed (captions are wrapped)."""
    return " ".join(" ".join(t.get_text() for t in fig.findobj(plt.Text)).split())


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    """(claim, case) -> the judged Result, with its runs removed: a figure draws from the numbers alone."""
    results = {}
    for case in CASES:
        for cid, suite in SUITES.items():
            root = tmp_path_factory.mktemp(f"{cid}-{case.replace(' ', '_')}")
            suite(Path(root), case)
            results[(cid, case)] = dataclasses.replace(judge(Path(root), cid), runs=[])
    return results


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("cid", list(SUITES))
def test_every_figure_is_legible(figures, cid, case):
    result = figures[(cid, case)]
    fig = render(result)
    if fig is None:  # refused before any number (e.g. C8 with nothing marked EMA-stress): no figure to check
        assert not result.checks
        return
    try:
        assert not overlapping_ticks(fig), overlapping_ticks(fig)
        renderer = fig.canvas.get_renderer()
        width = fig.bbox.width
        for ax in fig.axes:  # no title runs off the canvas
            box = ax.title.get_window_extent(renderer)
            assert box.x0 >= -1 and box.x1 <= width + 1, (cid, ax.get_title())
        for legend in fig.legends:  # the legend sits outside every axes, so it covers no data
            box = legend.get_window_extent(renderer)
            for ax in fig.axes:
                assert not box.overlaps(ax.get_window_extent(renderer)), (cid, ax.get_title())
        if cid in PAPER_NUMBERS:
            assert any(label.startswith("paper") for label in labels(fig)), labels(fig)
        if cid in SHARED:
            a, b = (panel(fig, p) for p in SHARED[cid])
            assert a.get_shared_y_axes().joined(a, b) and a.get_ylim() == b.get_ylim()
        assert "Paper:" in all_text(fig) and "95% intervals" in all_text(fig)
    finally:
        plt.close(fig)


def test_arm_names_are_explained(figures):
    fig = render(figures[("C8", "reproduced")])
    text = all_text(fig)
    plt.close(fig)
    for explained in ("precise = Wu & Johnson precise BN", "precise_alg2 = the paper's Algorithm 2 estimator",
                      "batch = test-time batch statistics", "ema = EMA of batch statistics"):
        assert explained in text


def test_fig1_steps_table_shows_real_steps(figures):
    """The steps-to-target table reads the log-spaced evaluations, not one number repeated."""
    result = figures[("fig1", "reproduced")]
    fig = render(result)
    cells = [c.get_text().get_text() for ax in fig.axes for table in ax.tables for c in table.get_celld().values()]
    plt.close(fig)
    steps = result.numbers["steps_to_target"]
    shown = {f"{v:,.0f}" for d in steps.values() for v in d.values() if v is not None}
    assert len(shown) > 2 and shown <= set(cells)


def test_the_checker_sees_overlapping_ticks():
    """The overlap check is not vacuous: crowded labels on a small axis are caught."""
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.set_xticks(range(8), [f"a long label {i}" for i in range(8)])
    try:
        assert overlapping_ticks(fig)
    finally:
        plt.close(fig)
