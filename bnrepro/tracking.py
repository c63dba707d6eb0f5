"""The run's record: metrics.jsonl and summary.json in the run directory (bnrepro/rundir.py), mirrored to W&B
when enabled.

The files are the source of truth (the report reads only them); W&B is a mirror, and no W&B failure may
stop a run.
"""
from __future__ import annotations

import json
import math
import netrc
import os
import secrets
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

from bnrepro import rundir
from bnrepro.arms import arm_of


ONLINE_TIMEOUT_S = 20  # how long a run waits for the W&B server before it logs offline instead
# x_save_requirements off: W&B would read the metadata of every installed package at each run's start (0.08 CPU s
# a run, the largest fixed cost of a cpu-scale run after Hydra's); the environment is pinned by pyproject.toml and
# summary.json records each run's torch version and git revision
SETTINGS = dict(silent=True, console="off", x_save_requirements=False)


def _finite_or_none(v):
    """NaN/inf as null (strict JSON), also inside a list (a per-unit probe series, bnrepro/probes/percentiles.py)."""
    if isinstance(v, list):
        return [_finite_or_none(x) for x in v]
    return None if isinstance(v, float) and not math.isfinite(v) else v


def wandb_mode() -> str:
    """WANDB_MODE wins; otherwise online only when the user is logged in (API key in env or netrc)."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        return "online" if netrc.netrc().authenticators("api.wandb.ai") else "offline"
    except (OSError, netrc.NetrcParseError):
        return "offline"


class Tracker:
    """Rank 0's record of a run. `resume_step` is the step of the checkpoint a run resumes from (0: a fresh
    start); `wandb_id` the W&B run to continue (W&B's resume="allow")."""

    def __init__(self, cfg, run_dir: Path, enabled: bool = True, wandb_id: str | None = None, resume_step: int = 0):
        self.run_dir, self.enabled, self.wandb, self.wandb_s = Path(run_dir), enabled, None, 0.0
        if not enabled:
            return
        rundir.truncate_rows(self.run_dir, resume_step)
        self.metrics = open(self.run_dir / rundir.METRICS, "a", buffering=1)
        if cfg.logger.name == "wandb":
            self.wandb = self._start_wandb(cfg, wandb_id)

    def _start_wandb(self, cfg, wandb_id):
        """The W&B run, online when logged in. An unreachable server is no reason to lose the mirror or to wait
        W&B's default 90 s: after ONLINE_TIMEOUT_S the run is logged offline instead (`wandb sync` it later).
        The seconds spent here are kept in `wandb_s`, which the run's wall time leaves out."""
        start = time.perf_counter()
        try:
            import wandb

            tags = [t for t in (cfg.scale_name, cfg.claim) if t]
            # group = experiment, job type = arm: what the report's dashboards filter and group by
            # our own id, chosen before the first checkpoint stores it, so a resumed run continues this one
            kwargs = dict(project=cfg.logger.project, entity=cfg.logger.entity, group=cfg.name,
                          job_type=arm_of(cfg) or None, tags=tags, config=OmegaConf.to_container(cfg, resolve=True),
                          dir=str(self.run_dir), id=wandb_id or secrets.token_hex(4), resume="allow",
                          name=self.run_dir.name, reinit="finish_previous")
            mode = wandb_mode()
            try:
                return wandb.init(mode=mode, settings=wandb.Settings(init_timeout=ONLINE_TIMEOUT_S, **SETTINGS),
                                  **kwargs)
            except Exception as e:  # noqa: BLE001 - no server, no login: keep an offline copy instead
                if mode != "online":
                    raise
                print(f"warning: W&B online failed ({type(e).__name__}: {' '.join(str(e).split())[:120]}); this run "
                      f"is logged offline in {self.run_dir / 'wandb'}: wandb sync it later", file=sys.stderr)
                return wandb.init(mode="offline", settings=wandb.Settings(**SETTINGS), **kwargs)
        except Exception as e:  # noqa: BLE001 - W&B is a mirror: no failure of it may stop training
            print(f"warning: W&B disabled for this run ({type(e).__name__}: {e}); files in {self.run_dir} "
                  "are the record", file=sys.stderr)
            return None
        finally:
            self.wandb_s = time.perf_counter() - start

    @property
    def wandb_id(self) -> str | None:
        return self.wandb.id if self.wandb is not None else None

    def log(self, row: dict) -> None:
        if not self.enabled:
            return
        row = {k: _finite_or_none(v) for k, v in row.items()}
        self.metrics.write(json.dumps(row) + "\n")
        self._wandb_call(lambda run: run.log(row, step=row["step"], commit=True))

    def close(self) -> None:
        """End this process's share of the run without a summary (interrupted: it will resume)."""
        if not self.enabled:
            return
        self.metrics.close()
        self._wandb_call(lambda run: run.mark_preempting())
        self._wandb_call(lambda run: run.finish())

    def finish(self, summary: dict) -> None:
        if not self.enabled:
            return
        summary = {k: _finite_or_none(v) for k, v in summary.items()}
        rundir.write_summary(self.run_dir, summary)
        self.metrics.close()
        self._wandb_call(lambda run: run.summary.update(summary))
        self._wandb_call(lambda run: run.finish())

    def _wandb_call(self, fn) -> None:
        if self.wandb is None:
            return
        try:
            fn(self.wandb)
        except Exception as e:  # noqa: BLE001
            print(f"warning: W&B call failed ({type(e).__name__}: {e}); continuing with files only",
                  file=sys.stderr)
            self.wandb = None
