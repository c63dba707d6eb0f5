"""The protocol every verdict follows (issue 21): exploration apart from confirmation.

A claim's design (its datasets, budget, arms, thresholds, n) is chosen on pilot runs with their own seeds, frozen
in the claim's module as a `Design` with the pilot numbers that justified it, and committed; only then are the
confirmation seeds run, and the verdict reads those alone. The report names each claim's design commit and refuses
(judges nothing, says why) confirmation runs whose config differs from the frozen design or whose code predates it.

Seeds, by range (declared here once; configs/scale/*.yaml's `seeds` and `pilot_seeds` follow it):
  0-999      exploration before the protocol (the runs of issue 9 and earlier, seen while designing): never read
  1000-1999  pilot seeds: where designs, budgets, thresholds and n are chosen (`make pilot`)
  2000-      confirmation seeds: the only ones a verdict under a frozen design reads
A scale without a frozen design (today: cifar, imagenet) is judged on whatever seeds ran and labelled
exploratory: nothing there was chosen before its runs."""
from __future__ import annotations

import functools
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from bnrepro.rundir import OVERRIDES

PILOT_FROM, CONFIRMATION_FROM = 1000, 2000


def role(seed) -> str:
    """exploration, pilot or confirmation, by the seed's range."""
    s = int(seed) if isinstance(seed, (int, float)) or str(seed).lstrip("-").isdigit() else -1
    return "confirmation" if s >= CONFIRMATION_FROM else "pilot" if s >= PILOT_FROM else "exploration"


@dataclass(frozen=True)
class Design:
    """One claim's design at one scale, frozen before its confirmation runs.

    data: the cells it runs on, a verdict each (in this order): a dataset ("digits"), or a dataset and model family
        ("mnist1d/resnet_cifar") where a claim runs more than one net on a dataset (C7: a conv net beside the MLP);
        a run belongs to "<data.name>/<model.name>" where the design names that pair, else to "<data.name>".
    config: keys every confirmation run must have: {dotted key: value}, or {dotted key: {dataset: value}}.
    n: confirmation seeds per arm (from the pilot's spread, 80% power, capped by the suite's budget: `pilot` says).
    pilot: the pilot numbers that chose it, in words (seeds, spread, the n they give, the cap).
    commit: the commit that froze it; confirmation runs made from code before it are refused. Empty until the
    design's commit exists (it is recorded in a later commit, before any confirmation run)."""

    data: tuple[str, ...]
    config: dict[str, Any] = field(default_factory=dict)
    n: int = 5
    pilot: str = ""
    commit: str = ""

    def expected(self, key: str, data: str):
        value = self.config[key]
        return value.get(data) if isinstance(value, dict) else value

    def outside(self, run) -> str | None:
        """Why a confirmation run is outside this design, or None."""
        data = cell(run, self.data)
        if data not in self.data:
            return f"data.name={data} (the design runs {', '.join(self.data)})"
        for key in self.config:
            want = self.expected(key, data)
            have = run.get(key)
            if want is not None and _norm(have) != _norm(want):
                return f"{key}={have!r} (the design says {want!r})"
        # a budget derived per arm (C7's examples / batch, C10's LR-scaled steps) is in no config key: a launched
        # run (Hydra recorded its arm) is compared with what the committed configs define for that arm
        if run.dir is not None and (Path(run.dir) / OVERRIDES).exists():
            steps, expected = run.get("trainer.max_steps"), budget(run)
            if expected is not None and steps is not None and int(steps) != expected:
                return f"trainer.max_steps={steps} (the design says {expected} for this arm)"
        rev = run.summary.get("git_rev")
        if self.commit and rev and before(rev, self.commit):
            return f"made from code {rev}, before the design was frozen at {self.commit}"
        return None


def cell(run, cells) -> str:
    """The design cell a run belongs to (Design.data): "<dataset>/<model family>" where `cells` names that pair,
    else its dataset."""
    data = str(run.get("data.name"))
    pair = f"{data}/{run.get('model.name')}"
    return pair if pair in cells else data


def budget(run) -> int | None:
    """The step budget the committed configs define for the run's experiment, scale and arm (a run without Hydra's
    record of its overrides: the experiment's own); None for an ad-hoc run, or one whose config no longer
    composes."""
    name, scale = run.name, run.summary.get("scale") or run.get("scale_name")
    try:
        return expected_steps(name, scale, arm_overrides(run)) if name and scale else None
    except Exception:  # noqa: BLE001 - nothing to compare against
        return None


@functools.cache
def expected_steps(name: str, scale: str, arm: tuple[str, ...] = ()) -> int | None:
    """trainer.max_steps that `experiment=name scale=scale` defines for a run of the given arm (its overrides of
    the keys the experiment sweeps: C10's budget scales with the LR); None for an ad-hoc run. Composed as the
    suite's launcher composes a job (hydra_plugins/bnrepro_launcher.py): each choice of config groups once."""
    sweep = _sweep(name, scale)
    if sweep is None:
        return None
    master, compose_once = sweep
    return int(compose_once.take(master, [f"experiment={name}", f"scale={scale}", *arm]).trainer.max_steps)


@functools.cache
def _sweep(name: str, scale: str):
    """The master config of `python -m bnrepro.train -m experiment=name scale=scale` and a ComposeOnce for its
    jobs; None for a name that is no experiment."""
    from hydra_plugins.bnrepro_launcher import sweep_configs

    from bnrepro import CONFIGS

    if not (CONFIGS / "experiment" / f"{name}.yaml").exists():
        return None
    return sweep_configs(CONFIGS, [f"experiment={name}", f"scale={scale}"])


def arm_overrides(run) -> tuple[str, ...]:
    """The run's own command-line overrides of the keys its experiment sweeps (seed aside), from Hydra's record."""
    from bnrepro import rundir
    from bnrepro.arms import SWEEPS

    swept = {k for keys in SWEEPS.get(run.name, {}).values() for k in keys} | {"data", "cell"}  # the data axis
    # too: budgets differ per dataset (steps_by_data)
    return tuple(sorted(o for o in rundir.read_overrides(run.dir) if o.split("=", 1)[0].lstrip("+~") in swept))


def _norm(value):
    if isinstance(value, (list, tuple)):
        return tuple(_norm(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


ROOT = Path(__file__).resolve().parents[2]


@lru_cache(maxsize=None)
def before(rev: str, commit: str) -> bool:
    """Whether rev is a strict ancestor of commit (code older than the design). False where git cannot tell
    (no repository, an unknown commit): the report then says the check was not made, in design_note."""
    try:
        same = subprocess.run(["git", "-C", str(ROOT), "rev-parse", rev, commit], capture_output=True, text=True,
                              timeout=10)
        if same.returncode or len(set(same.stdout.split())) == 1:
            return False
        done = subprocess.run(["git", "-C", str(ROOT), "merge-base", "--is-ancestor", rev, commit],
                              capture_output=True, timeout=10)
        return done.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@lru_cache(maxsize=None)
def known(commit: str) -> bool:
    """Whether this checkout's git knows the commit (so the ancestry check is made)."""
    try:
        return subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{commit}^{{commit}}"],
                              capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
