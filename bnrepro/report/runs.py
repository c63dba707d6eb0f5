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
        rows = [(m["step"], m[key]) for m in self.metrics if _finite(m.get(key)) and m.get("step") is not None]
        if not rows:
            return np.zeros(0), np.zeros(0)
        steps, values = zip(*rows)
        return np.asarray(steps, float), np.asarray(values, float)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class Damaged(Exception):
    """A file of a run dir that cannot be read whole; the message is "<file>: <reason>"."""


FINISHED = ("completed", "diverged")  # the statuses whose metrics the statistics read


def read_metrics(path: Path, strict: bool = False) -> list[dict]:
    """metrics.jsonl rows. strict (a finished run, whose rows the statistics read): Damaged unless the file is
    there and every line is a JSON object with a step above the one before (the probes' step-0 row included):
    a torn or garbage line, or rows written twice or out of order (two writers), would change the statistics
    silently. Otherwise (a failed or interrupted run, never measured) what parses is kept."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        if strict:
            raise Damaged(f"metrics.jsonl: {_why(e)}") from None
        return []
    rows, last = [], None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not strict:
            if isinstance(row, dict):
                rows.append(row)
            continue
        where = f"metrics.jsonl: line {number} of {len(lines)}"
        if not isinstance(row, dict):
            raise Damaged(f"{where} is not a JSON object" + (" (torn: the last line)" if number == len(lines) else ""))
        step = row.get("step")
        if not _finite(step):
            raise Damaged(f"{where} has no step")
        if last is not None and step <= last:
            raise Damaged(f"{where} has step {step} after step {last} (a row written twice or out of order)")
        rows.append(row)
        last = step
    return rows


def _why(error: Exception) -> str:
    if isinstance(error, json.JSONDecodeError):
        return "empty" if not error.doc.strip() else f"not JSON ({error})"
    if isinstance(error, UnicodeDecodeError):
        return "not text"
    if isinstance(error, FileNotFoundError):
        return "missing"
    if isinstance(error, OSError):
        return error.strerror or str(error)
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


def _load_config(path: Path) -> dict:
    """The run's config; interpolations are resolved where they can be outside Hydra, else kept as text."""
    cfg = OmegaConf.load(path)
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # e.g. ${hydra:...} has no resolver outside a Hydra app
        return OmegaConf.to_container(cfg, resolve=False)


def _read_config(run_dir: Path) -> dict:
    path = run_dir / ".hydra" / "config.yaml"
    if not path.exists():
        return {}
    try:
        config = _load_config(path)
    except Exception as e:  # noqa: BLE001 - YAML, OmegaConf and OS errors alike: the file cannot be read
        raise Damaged(f".hydra/config.yaml: {_why(e)}") from None
    if not isinstance(config, dict) or not config:  # a torn write can leave it empty
        raise Damaged(".hydra/config.yaml: " + ("empty" if not config else "not a mapping"))
    return flatten(config)


def _read_summary(path: Path) -> dict:
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise Damaged(f"summary.json: {_why(e)}") from None
    if not isinstance(summary, dict):
        raise Damaged(f"summary.json: not a JSON object (a {type(summary).__name__})")
    return summary


def load_run(run_dir: Path) -> Run:
    """The run dir read whole; or, when a file is damaged, a run of status "unreadable" whose error names the
    file and why: left out of every statistic and counted like a failed run, never read in part. Its config (or
    its summary's name and claim) is kept where readable, so it is counted with its claim."""
    config, summary, damage = {}, {}, None
    try:
        config = _read_config(run_dir)
    except Damaged as e:
        damage = str(e)
    try:
        summary = _read_summary(run_dir / "summary.json")
        finished = summary.get("status") in FINISHED
        metrics = read_metrics(run_dir / "metrics.jsonl", strict=finished)
        if finished and metrics and summary.get("steps") is not None and metrics[-1]["step"] != summary["steps"]:
            # every line parses, but the file was cut at a line's end: a finished run's last row is its last step
            raise Damaged(f"metrics.jsonl: ends at step {metrics[-1]['step']}, but summary.json says the run took "
                          f"{summary['steps']} steps (rows lost)")
    except Damaged as e:
        damage = damage or str(e)
    if damage:
        kept = {k: summary[k] for k in ("name", "claim", "scale") if k in summary}
        return Run(dir=run_dir, config=config, summary={**kept, "status": "unreadable", "error": damage})
    return Run(dir=run_dir, config=config, summary=summary, metrics=metrics)


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
