"""Entry point: `python -m bnrepro.train [experiment=...] [overrides]`, or `-m` for a sweep.

`main` is a thin Hydra wrapper; `train(cfg, run_dir)` does the work and is what tests call.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from bnrepro import ConfigError
from bnrepro.loop import fit

FINISHED = ("completed", "diverged")


def train(cfg: DictConfig, run_dir: str | Path | None = None, multirun: bool = False) -> dict:
    """Run one training job in run_dir (default: Hydra's output dir) and return its summary.

    A run whose summary says it finished is not repeated, so relaunching an interrupted sweep only runs
    what is missing.
    """
    run_dir = Path(run_dir or HydraConfig.get().runtime.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    summary_path = run_dir / "summary.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        if summary.get("status") in FINISHED:
            print(f"{run_dir}: already {summary['status']}, skipped", file=sys.stderr)
            return summary
    config_path = run_dir / ".hydra" / "config.yaml"
    if not config_path.exists():  # Hydra writes it for CLI runs; direct calls (tests, notebooks) get it here
        config_path.parent.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, config_path, resolve=True)
    return fit(cfg, run_dir, multirun=multirun)


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> None:
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        train(cfg, multirun=multirun)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        if not multirun:  # in a sweep, one bad job must not take the others down
            sys.exit(2)


if __name__ == "__main__":
    main()
