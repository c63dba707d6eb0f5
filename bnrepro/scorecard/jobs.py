"""The runs a scorecard needs, found by config identity or launched.

A property's arms are a claim's sweep with a few overrides (bnrepro/report/properties.py). Every job of that sweep
is composed as the launcher composes it (hydra_plugins/bnrepro_launcher.py) and identified by its config hash
(bnrepro/identity.py): a finished run with that hash anywhere under the claims' runs or the scorecard's is reused,
never retrained, wherever it lies and however it was launched. Only the jobs with no such run are launched: the
norm's into the scorecard's runs, a missing reference run (BN, no BN) into the claims' runs, where `make reproduce`
would have put it (the same dir, so the suite reuses it too).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from bnrepro import CONFIGS, rundir


@dataclass(frozen=True)
class Job:
    experiment: str
    overrides: tuple[str, ...]  # as the sweeper gives them to the launcher (experiment= and scale= included)
    hash: str
    root: Path  # where it is launched if no run has its hash: RUNS or the scorecard's runs
    net: str = ""  # "<model> on <dataset>": the net the job trains

    @property
    def seed(self) -> str:
        return next((o.split("=", 1)[1] for o in self.overrides if o.startswith("seed=")), "")


def expand(experiment: str, scale: str, overrides: list[str]) -> tuple[list[list[str]], object, object]:
    """Every job of `python -m bnrepro.train -m experiment=E scale=S OVERRIDES` as Hydra's basic sweeper makes
    them (its sweep params, then the command line's, the later winning), with the master config and the
    ComposeOnce that composes them."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra_plugins.bnrepro_launcher import sweep_configs

    given = [f"experiment={experiment}", f"scale={scale}", *overrides]
    master, compose = sweep_configs(CONFIGS, given)
    params = [f"{k}={v}" for k, v in (master.hydra.sweeper.params or {}).items()]
    parsed = OverridesParser.create().parse_overrides([*params, *given])
    (batch,) = BasicSweeper.split_arguments(parsed, None)
    return batch, master, compose


def jobs(experiment: str, scale: str, overrides: list[str], root: Path) -> list[tuple[Job, object]]:
    """The sweep's jobs with their config hashes (the trainer's: bnrepro.identity.config_hash), each with its
    composed config."""
    from bnrepro.identity import config_hash

    batch, master, compose = expand(experiment, scale, overrides)
    out = []
    for job in batch:
        cfg = compose.take(master, job)
        out.append((Job(experiment, tuple(job), config_hash(cfg), Path(root), f"{cfg.model.name} on {cfg.data.name}"),
                    cfg))
    return out


def index(*roots: Path) -> dict[str, Path]:
    """{config hash: run dir} of every finished run (completed or diverged) under the roots."""
    found: dict[str, Path] = {}
    for root in roots:
        for run_dir in rundir.find(root):
            try:
                summary = json.loads((run_dir / rundir.SUMMARY).read_text())
            except (OSError, ValueError):
                continue
            if summary.get("status") in rundir.FINISHED and summary.get("config_hash"):
                found.setdefault(summary["config_hash"], run_dir)
    return found


def tasks(missing: list[Job], launcher: str = "joblib") -> list[tuple[str, str, list[str]]]:
    """The missing jobs as the suite's tasks (bnrepro/suite.py: (folder, label, argv)): one per experiment, root
    and arm, sweeping its seeds, each job run in the task's own process (hydra.launcher.n_jobs=1)."""
    groups: dict[tuple, list[str]] = {}
    for job in missing:
        rest = tuple(o for o in job.overrides if not o.startswith("seed="))
        groups.setdefault((job.experiment, str(job.root), rest), []).append(job.seed)
    out = []
    for (experiment, root, rest), seeds in groups.items():
        folder = Path(root) / experiment
        argv = [*rest, f"seed={','.join(seeds)}", f"hydra/launcher={launcher}", f"hydra.sweep.dir={folder}",
                "hydra.launcher.n_jobs=1"]
        arm = ",".join(o for o in rest if not o.startswith(("experiment=", "scale=")))
        out.append((str(folder), f"{experiment} [{arm}] seeds {','.join(seeds)}", argv))
    return out


def launch(missing: list[Job], streams: int, keep_going: bool = True) -> list[str]:
    """Run the missing jobs in `streams` processes (the suite's streams); the labels of the tasks that failed."""
    from bnrepro import suite

    todo = tasks(missing)
    if not todo:
        return []
    args = argparse.Namespace(streams=streams, runs=Path(), keep_going=keep_going, scale="", launcher="joblib")
    # each task names its folder whole (tasks()); the suite prints it as args.runs / folder
    return (suite.in_streams if streams > 1 else suite.in_turn)(todo, args)
