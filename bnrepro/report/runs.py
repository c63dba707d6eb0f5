"""Load run directories (bnrepro/rundir.py reads their files) into records the claims can group."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bnrepro import rundir
from bnrepro.rundir import Damaged, finite


@dataclass
class Run:
    """One training run (completed, diverged, failed, interrupted, started or unreadable), as its run
    directory describes it."""

    dir: Path
    config: dict  # flattened: {"model.norm": "bn", "optim.lr_mult": 5, ...}
    summary: dict
    metrics: list[dict] = field(default_factory=list)

    @property
    def name(self) -> str | None:
        return self.config.get("name") or self.summary.get("name")

    @property
    def claim(self) -> str | None:
        return self.config.get("claim") or self.summary.get("claim")

    @property
    def status(self) -> str:
        return str(self.summary.get("status", "failed"))  # a str even when the file says null: statuses are sorted

    @property
    def diverged(self) -> bool:
        return self.status == "diverged"

    def get(self, key: str, default=None):
        """A config value by dotted key; lists become tuples so they can group runs."""
        value = self.config.get(key, default)
        return tuple(value) if isinstance(value, list) else value

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of one metrics.jsonl field; missing or null values are left out."""
        rows = [(m["step"], m[key]) for m in self.metrics if finite(m.get(key)) and m.get("step") is not None]
        if not rows:
            return np.zeros(0), np.zeros(0)
        steps, values = zip(*rows)
        return np.asarray(steps, float), np.asarray(values, float)


def load_run(run_dir: Path) -> Run:
    """The run dir read whole; or, when a file is damaged, a run of status "unreadable" whose error names the
    file and why: left out of every statistic and counted like a failed run, never read in part. Its config (or
    its summary's name and claim) is kept where readable, so it is counted with its claim."""
    config, summary, damage = {}, {}, None
    try:
        config = rundir.read_config(run_dir)
    except Damaged as e:
        damage = str(e)
    try:
        summary = rundir.read_summary(run_dir)
        finished = summary.get("status") in rundir.FINISHED
        metrics = rundir.read_metrics(run_dir, strict=finished)
        if finished and metrics and summary.get("steps") is not None and metrics[-1]["step"] != summary["steps"]:
            # every line parses, but the file was cut at a line's end: a finished run's last row is its last step
            raise Damaged(f"{rundir.METRICS}: ends at step {metrics[-1]['step']}, but {rundir.SUMMARY} says the run "
                          f"took {summary['steps']} steps (rows lost)")
    except Damaged as e:
        damage = damage or str(e)
    if damage:
        kept = {k: summary[k] for k in ("name", "claim", "scale") if k in summary}
        return Run(dir=run_dir, config=config, summary={**kept, "status": rundir.UNREADABLE, "error": damage})
    return Run(dir=run_dir, config=config, summary=summary, metrics=metrics)


def load_runs(root: str | Path) -> list[Run]:
    """Every run directory under root (rundir.find), read."""
    return [load_run(run_dir) for run_dir in rundir.find(root)]


def select(runs: list[Run], name: str) -> list[Run]:
    """The runs of one experiment (config `name`)."""
    return [run for run in runs if run.name == name]


def sort_key(key: tuple) -> tuple:
    return tuple((0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v)) for v in key)


# Keys that never change a run's numbers: where files go, logging, device placement and parallelism. The seed
# (and seeds derived from it) is what pooling is for.
NEUTRAL_PARTS = ("dir", "root", "path", "logger", "wandb", "device", "workers", "threads", "jobs", "hydra",
                 "output", "log_every", "checkpoint", "ckpt", "resume", "seed", "progress", "download")


def neutral(key: str) -> bool:
    """A config key that does not change results (so two seeds may differ in it)."""
    return any(part in key.lower() for part in NEUTRAL_PARTS) or key in ("name", "claim", "targets")


class Unpoolable(Exception):
    """Runs grouped as seeds of one arm differ in a key that changes results."""


def check_pooling(arms: dict[tuple, list[Run]]) -> None:
    """Refuse to pool unlike runs: within each arm, every run's config must agree on every key except the seed
    and neutral keys. A 60-step and an 80-step run are not two seeds; two runs with the same seed are not either."""
    problems = []
    for arm, runs in arms.items():
        keys = sorted({k for run in runs for k in run.config if not neutral(k)})
        differing = [k for k in keys if len({repr(run.get(k)) for run in runs}) > 1]
        seeds = [run.get("seed") for run in runs]
        if differing:
            problems.append(f"arm {', '.join(map(str, arm)) or 'all'}: runs differ in {', '.join(differing)}")
        elif len(set(map(repr, seeds))) < len(seeds):
            problems.append(f"arm {', '.join(map(str, arm)) or 'all'}: a seed appears twice")
    if problems:
        raise Unpoolable("refused to pool runs that are not seeds of one config (" + "; ".join(problems) + ")")
