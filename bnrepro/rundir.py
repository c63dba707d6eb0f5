"""The run directory, declared once: the files a run leaves, the statuses its summary says, and how they are found,
read and written. The trainer (train, identity, tracking, checkpoint, loop), the report (report/runs.py,
report/__main__.py) and the tests all go through here.

    <run dir>/
      .hydra/config.yaml, overrides.yaml   Hydra's record of the launch: the config and the command-line overrides
      .bnrepro/identity.json, hydra/       the trainer's own: the config hash, the config and code the run began
                                           from, and the first launch's .hydra/ (restored over later launches')
      .lock                                held (flock) by the process that trains the run (identity.RunLock)
      metrics.jsonl                        one JSON row per evaluation, steps increasing
      summary.json                         the status (STATUSES) and, when finished, the final numbers
      checkpoints/last.pt, previous.pt, best.pt
      wandb/                               W&B's copy, when logger=wandb
      <job>.log                            Hydra's job log
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from bnrepro import atomic, flatten

HYDRA = ".hydra"
CONFIG = f"{HYDRA}/config.yaml"
OVERRIDES = f"{HYDRA}/overrides.yaml"
OWN = ".bnrepro"
IDENTITY = f"{OWN}/identity.json"
LOCK = ".lock"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CHECKPOINTS = "checkpoints"
LAST, PREVIOUS, BEST = "last.pt", "previous.pt", "best.pt"  # in CHECKPOINTS (bnrepro/checkpoint.py)
WANDB = "wandb"
ASIDE = ".aside"  # where trainer.overwrite=true moves an old run: a hidden folder beside the run dir

# Everything a run dir may hold besides Hydra's *.log and temp files: what the trainer, Hydra and W&B write.
RUN_FILES = {HYDRA, OWN, LOCK, METRICS, SUMMARY, CHECKPOINTS, WANDB}
RESULTS = (SUMMARY, METRICS, CHECKPOINTS)  # what a run that has started training leaves
# temporary files of a write cut short: today's (bnrepro/atomic.py) and the names earlier versions used
TEMP_PREFIXES = (f".{SUMMARY}.tmp", f".{METRICS}.tmp", f"{SUMMARY}.tmp", "metrics.tmp")

# summary.json's status: started (training, or killed before it could say more), then one of the others.
STARTED, COMPLETED, DIVERGED, INTERRUPTED, FAILED = "started", "completed", "diverged", "interrupted", "failed"
UNREADABLE = "unreadable"  # the report's, for a run dir with a damaged file (never written into a run dir)
FINISHED = (COMPLETED, DIVERGED)  # the statuses whose metrics the statistics read


# The one migration of run dirs (issue 20): the keys one claim reads moved from the top level of the config into
# `claim_params` (checked by the claim's own PARAMS, bnrepro/claims/). A config recorded before, in .hydra/ or
# identity.json, is read as if written today (`upgrade`): by the report, and by the run identity, so a relaunched
# sweep finds its old runs finished. Nothing in a run dir is rewritten.
CLAIM_PARAMS = "claim_params"
MOVED_TO_CLAIM_PARAMS = ("variant", "ladder_weight_decay", "c3_fair_init", "c7_protocol", "c7_real", "c8_setting",
                         "c10_budget", "c12_train_steps", "c14_weight_decays", "c15_model")


def upgrade(config: dict) -> dict:
    """A nested config as today's layout has it: the claim keys of an older run moved into claim_params."""
    moved = {k: config[k] for k in MOVED_TO_CLAIM_PARAMS if k in config}
    if not moved:
        return config
    rest = {k: v for k, v in config.items() if k not in moved}
    return {**rest, CLAIM_PARAMS: {**moved, **(config.get(CLAIM_PARAMS) or {})}}


def is_run_file(name: str) -> bool:
    return name in RUN_FILES or name.endswith(".log") or name.startswith(TEMP_PREFIXES)


def holds_results(run_dir: Path) -> bool:
    return any((Path(run_dir) / p).exists() for p in RESULTS)


def find(root: str | Path) -> list[Path]:
    """Every run dir under root (any depth), found by its summary.json, in a stable order. Hidden folders (a run
    moved aside, the trainer's own .bnrepro/) hold no current run."""
    root = Path(root)
    if not root.is_dir():
        return []
    return [p.parent for p in sorted(root.rglob(SUMMARY))
            if not any(part.startswith(".") for part in p.relative_to(root).parts)]


# --- writing (the trainer, rank 0) ------------------------------------------------------------------------------

def write_summary(run_dir: Path, summary: dict) -> None:
    """Atomic: a reader never sees a half-written file (bnrepro/atomic.py)."""
    atomic.write_json(Path(run_dir) / SUMMARY, summary, indent=2, allow_nan=False)


def write_status(run_dir: Path, summary: dict) -> None:
    """summary.json for a run that did not finish (failed, interrupted): atomically when the disk allows, else
    written in place, into the blocks of the summary.json the run started with (a full disk has no room for a
    temporary file beside it, and a failure must still be a status the report can read)."""
    try:
        write_summary(run_dir, summary)
    except OSError:
        with open(Path(run_dir) / SUMMARY, "w") as f:  # the truncation frees the old summary's block for this one
            f.write(json.dumps(summary, indent=2, allow_nan=False))


def truncate_rows(run_dir: Path, last_step: int) -> None:
    """Keep only the metrics rows up to last_step: a resumed run continues from its checkpoint, so the rows an
    interrupted run wrote after it would otherwise appear twice (they are logged again as the run replays
    those steps). A fresh start (last_step 0) keeps none: its step-0 row (the probes' at_start) is logged again.
    A row that does not parse (the torn last line of a run killed mid-write) is dropped, with a warning."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return
    text = path.read_text()
    rows = [line for line in text.splitlines() if line.strip()]
    kept = [line for line in rows if last_step > 0 and (row := _parse(line)) is not None
            and row.get("step", 0) <= last_step]
    if len(kept) != len(rows) or (text and not text.endswith("\n")):
        with atomic.writing(path) as tmp:
            tmp.write_text("".join(line + "\n" for line in kept))


def _parse(line: str) -> dict | None:
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        print(f"warning: dropped a torn {METRICS} line ({line[:40]!r}...): it is logged again", file=sys.stderr)
        return None
    return row if isinstance(row, dict) else None


def write_run(run_dir: Path, config: dict, rows: list[dict], summary: dict, overrides: list[str] = ()) -> Path:
    """A run dir as the trainer leaves a finished run: Hydra's record (config, overrides), metrics.jsonl and
    summary.json. For runs made elsewhere and for the tests' synthetic runs, so that they have this layout."""
    run_dir = Path(run_dir)
    (run_dir / HYDRA).mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG).write_text(yaml.safe_dump(config))
    (run_dir / OVERRIDES).write_text(yaml.safe_dump(list(overrides)))
    (run_dir / METRICS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run_dir / SUMMARY).write_text(json.dumps(summary))
    return run_dir


# --- reading (the report: whole or not at all) ------------------------------------------------------------------

class Damaged(Exception):
    """A file of a run dir that cannot be read whole; the message is "<file>: <reason>"."""


def finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def why(error: Exception) -> str:
    """What is wrong with a file, in a few words."""
    if isinstance(error, json.JSONDecodeError):
        return "empty" if not error.doc.strip() else f"not JSON ({error})"
    if isinstance(error, UnicodeDecodeError):
        return "not text"
    if isinstance(error, FileNotFoundError):
        return "missing"
    if isinstance(error, OSError):
        return error.strerror or str(error)
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


def read_summary(run_dir: Path) -> dict:
    """summary.json as a dict, or Damaged."""
    try:
        summary = json.loads((Path(run_dir) / SUMMARY).read_text())
    except (OSError, ValueError) as e:
        raise Damaged(f"{SUMMARY}: {why(e)}") from None
    if not isinstance(summary, dict):
        raise Damaged(f"{SUMMARY}: not a JSON object (a {type(summary).__name__})")
    return summary


def read_metrics(run_dir: Path, strict: bool = False) -> list[dict]:
    """metrics.jsonl rows. strict (a finished run, whose rows the statistics read): Damaged unless the file is
    there and every line is a JSON object with a step above the one before (the probes' step-0 row included):
    a torn or garbage line, or rows written twice or out of order (two writers), would change the statistics
    silently. Otherwise (a failed or interrupted run, never measured) what parses is kept."""
    try:
        lines = (Path(run_dir) / METRICS).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        if strict:
            raise Damaged(f"{METRICS}: {why(e)}") from None
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
        where = f"{METRICS}: line {number} of {len(lines)}"
        if not isinstance(row, dict):
            raise Damaged(f"{where} is not a JSON object" + (" (torn: the last line)" if number == len(lines) else ""))
        step = row.get("step")
        if not finite(step):
            raise Damaged(f"{where} has no step")
        if last is not None and step <= last:
            raise Damaged(f"{where} has step {step} after step {last} (a row written twice or out of order)")
        rows.append(row)
        last = step
    return rows


def read_config(run_dir: Path) -> dict:
    """Hydra's record of the run's config in today's layout (`upgrade`), flattened ({} when there is none);
    interpolations are resolved where they can be outside Hydra, else kept as text. Damaged when the file cannot
    be read."""
    path = Path(run_dir) / CONFIG
    if not path.exists():
        return {}
    try:
        cfg = OmegaConf.load(path)
        try:
            config = OmegaConf.to_container(cfg, resolve=True)
        except Exception:  # e.g. ${hydra:...} has no resolver outside a Hydra app
            config = OmegaConf.to_container(cfg, resolve=False)
    except Exception as e:  # noqa: BLE001 - YAML, OmegaConf and OS errors alike: the file cannot be read
        raise Damaged(f"{CONFIG}: {why(e)}") from None
    if not isinstance(config, dict) or not config:  # a torn write can leave it empty
        raise Damaged(f"{CONFIG}: " + ("empty" if not config else "not a mapping"))
    return flatten(upgrade(config))


def read_overrides(run_dir: Path) -> list[str]:
    """The launch's command-line overrides, as Hydra recorded them ([] when there is no record)."""
    path = Path(run_dir) / OVERRIDES
    return (yaml.safe_load(path.read_text()) or []) if path.exists() else []
