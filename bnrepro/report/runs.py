"""Load run directories (summary.json, metrics.jsonl, .hydra/config.yaml) into records the claims can group."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from bnrepro import flatten


@dataclass
class Run:
    """One finished (or diverged, or failed) training run, as its run directory describes it."""

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
        return self.summary.get("status", "failed")

    @property
    def diverged(self) -> bool:
        return self.status == "diverged"

    def get(self, key: str, default=None):
        """A config value by dotted key; lists become tuples so they can group runs."""
        value = self.config.get(key, default)
        return tuple(value) if isinstance(value, list) else value

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of one metrics.jsonl field; missing or null values are left out."""
        rows = [(m["step"], m[key]) for m in self.metrics if _finite(m.get(key)) and m.get("step") is not None]
        if not rows:
            return np.zeros(0), np.zeros(0)
        steps, values = zip(*rows)
        return np.asarray(steps, float), np.asarray(values, float)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_metrics(path: Path) -> list[dict]:
    """metrics.jsonl rows; a torn last line (a run killed mid-write) is skipped, not fatal."""
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def _load_config(path: Path) -> dict:
    """The run's config; interpolations are resolved where they can be outside Hydra, else kept as text."""
    cfg = OmegaConf.load(path)
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # e.g. ${hydra:...} has no resolver outside a Hydra app
        return OmegaConf.to_container(cfg, resolve=False)


def load_run(run_dir: Path) -> Run:
    summary = json.loads((run_dir / "summary.json").read_text())
    config_path = run_dir / ".hydra" / "config.yaml"
    config = flatten(_load_config(config_path)) if config_path.exists() else {}
    return Run(dir=run_dir, config=config, summary=summary, metrics=read_metrics(run_dir / "metrics.jsonl"))


def load_runs(root: str | Path) -> list[Run]:
    """Every run directory under root (any depth), found by its summary.json, in a stable order."""
    root = Path(root)
    if not root.exists():
        return []
    # hidden folders (a run moved aside by trainer.overwrite=true, the trainer's own .bnrepro/) hold no current run
    return [load_run(path.parent) for path in sorted(root.rglob("summary.json"))
            if not any(part.startswith(".") for part in path.relative_to(root).parts)]


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
