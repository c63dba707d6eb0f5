"""Entry point: `python -m bnrepro.train [experiment=...] [overrides]`, `-m` for a sweep, or
`torchrun --nproc_per_node=N -m bnrepro.train ...` for data-parallel training.

`main` is a thin Hydra wrapper; `train(cfg, run_dir)` does the work and is what tests call.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from bnrepro import ConfigError
from bnrepro import distributed as dist
from bnrepro.loop import fit, pick_device

FINISHED = ("completed", "diverged")



def train(cfg: DictConfig, run_dir: str | Path | None = None, multirun: bool = False) -> dict:
    """Run one training job in run_dir (default: Hydra's output dir) and return its summary.

    A run whose summary says it finished is not repeated, so relaunching an interrupted sweep only runs
    what is missing; a run with a checkpoint but no summary resumes from it.
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
    if dist.is_main() and not config_path.exists():  # Hydra writes it for CLI runs; direct calls get it here
        config_path.parent.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, config_path, resolve=True)
    return fit(cfg, run_dir, multirun=multirun)


def shared_run_dir(own: Path) -> Path:
    """All torchrun ranks use rank 0's Hydra output dir (their own timestamps may differ by a second); a rank
    whose Hydra made another dir removes what Hydra put there."""
    shared = Path(dist.broadcast_object(str(own)))
    if shared != own and own.is_dir():
        shutil.rmtree(own / ".hydra", ignore_errors=True)
        for log in own.glob("*.log"):
            log.unlink()
        with_parents = [own, *own.parents]
        for d in with_parents[:2]:  # the run dir and its name folder, only if now empty
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
    return shared


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> None:
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        dist.init(pick_device(cfg.trainer.device).type)
        run_dir = shared_run_dir(Path(HydraConfig.get().runtime.output_dir))
        train(cfg, run_dir, multirun=multirun)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        if not multirun:  # in a sweep, one bad job must not take the others down
            sys.exit(2)
    finally:
        dist.teardown()


if __name__ == "__main__":
    main()
