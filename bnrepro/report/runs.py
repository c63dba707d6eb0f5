"""Load run directories (summary.json, metrics.jsonl, .hydra/config.yaml) into records the claims can group."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf


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

    def steps_to(self, acc: float) -> float | None:
        """First evaluated step with test accuracy >= acc (None if never reached)."""
        steps, accs = self.series("test_acc")
        hit = np.nonzero(accs >= acc)[0]
        return float(steps[hit[0]]) if len(hit) else None


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


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


@dataclass(frozen=True)
class Stat:
    """Mean and spread over seeds of one number; `values` keeps the per-seed numbers."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if self.n > 1 else 0.0

    @property
    def sem(self) -> float:
        return self.std / math.sqrt(self.n) if self.n else math.nan

    def fmt(self, scale: float = 100.0, digits: int = 1, unit: str = "%") -> str:
        if not self.values:
            return "n/a"
        spread = f" ± {self.std * scale:.{digits}f}" if self.n > 1 else ""
        return f"{self.mean * scale:.{digits}f}{spread}{unit} (n={self.n})"


def group(runs: list[Run], keys: tuple[str, ...], value) -> dict[tuple, Stat]:
    """Per distinct tuple of config values at `keys`: the Stat of value(run) over the runs (seeds).

    value(run) returns a float, or None to leave the run out."""
    buckets: dict[tuple, list[float]] = {}
    for run in runs:
        number = value(run)
        if number is not None:
            buckets.setdefault(tuple(run.get(key) for key in keys), []).append(float(number))
    return {key: Stat(tuple(values)) for key, values in sorted(buckets.items(), key=lambda kv: sort_key(kv[0]))}


def sort_key(key: tuple) -> tuple:
    return tuple((0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v)) for v in key)


def mean_curve(runs: list[Run], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean, std) of a metrics field over runs; each step averages the runs that reached it
    (a diverged run stops contributing where it stopped)."""
    by_step: dict[float, list[float]] = {}
    for run in runs:
        for step, value in zip(*run.series(key)):
            by_step.setdefault(step, []).append(value)
    steps = np.asarray(sorted(by_step))
    return (steps, np.array([np.mean(by_step[s]) for s in steps]), np.array([np.std(by_step[s]) for s in steps]))
