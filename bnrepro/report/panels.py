"""The W&B Report's panels (wandb-workspaces' panel constructor arguments as plain dicts): the kinds every claim
draws from, and the common ones. Each claim declares its own in its module (`PANELS`, bnrepro/claims/); a claim
without them gets DEFAULT; wandb_report.py builds the Report from them."""
from __future__ import annotations

PROBES = ["probe_p15", "probe_p50", "probe_p85"]


def line(title: str, y: list[str], x: str = "Step", **extra) -> dict:
    """A metric's history vs steps, one line per arm (mean over seeds, band = standard error)."""
    return {"type": "LinePlot", "title": title, "x": x, "y": y, "groupby": "JobType", "groupby_aggfunc": "mean",
            "groupby_rangefunc": "stderr", **extra}


def bar(title: str, keys: list[str]) -> dict:
    """Summary values per arm (mean over seeds, whiskers = standard error)."""
    return {"type": "BarPlot", "title": title, "metrics": [{"summary": k} for k in keys], "groupby": "JobType",
            "groupby_aggfunc": "mean", "groupby_rangefunc": "stderr", "orientation": "v"}


def scatter(title: str, x_config: str, y_summary: str) -> dict:
    return {"type": "ScatterPlot", "title": title, "x": {"config": x_config}, "y": {"summary": y_summary}}


TEST_ACC = line("test accuracy vs step", ["test_acc"])
SCORE = bar("score (mean test accuracy over the last evaluations)", ["score"])


DEFAULT = [TEST_ACC, SCORE]
