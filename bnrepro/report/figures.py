"""One PNG per claim and dataset, drawn by the claim's own FIGURE (bnrepro/claims/) only from the judge's numbers
(Result.numbers and Result.checks) and the paper's table, never from the runs, so a figure and its verdict cannot
group runs differently; a claim without a figure of its own gets `generic`.

Every figure: ours as means with 95% error bars (bands for curves), the paper's numbers beside them as hollow
black diamonds labelled "paper ..." where the paper gives any (its claim in the caption where it gives none),
shared y where panels are compared, y zoomed to where the differences live (range stated in the label), and
the rule's tests in the right-hand column. `render` returns the Figure; `draw` saves it."""
from __future__ import annotations

from pathlib import Path

from bnrepro.claims import FIGURES, TEST_MARKS
from bnrepro.report import plots as P
from bnrepro.report import style
from bnrepro.report.judging import Result
from bnrepro.report.rules import NOT_RUN
from bnrepro.report.style import plt


def generic(result: Result):
    fig, gs = P.frame(result, 12, 5.5, (1, 1), marks=TEST_MARKS.get(result.id))
    ax = fig.add_subplot(gs[0, 0])
    P.arm_dots(ax, result.numbers["arms"], ylabel="score, test accuracy (%)")
    P.caption(fig, result)
    return fig


def render(result: Result):
    """The claim's Figure (legible ticks), or None when it was not judged (not run, or refused before any number)."""
    if result.verdict == NOT_RUN or not result.checks:
        return None
    fig = FIGURES.get(result.id, generic)(result)
    style.figure_legend(fig)
    style.untangle(fig)
    return fig


def draw(result: Result, out: Path) -> Path | None:
    """Render the claim's figure and save it as <out>/<id>_<data>.png (<id>.png for runs judged together)."""
    fig = render(result)
    if fig is None:
        return None
    path = Path(out) / f"{result.slug}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
