"""Entry point: `python -m bnrepro.train [experiment=...] [overrides]`, `-m` for a sweep, or
`torchrun --nproc_per_node=N -m bnrepro.train ...` for data-parallel training.

`main` is a thin Hydra wrapper; `train(cfg, run_dir)` does the work and is what tests call.
"""
from __future__ import annotations

import shutil
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from bnrepro import CONFIGS, ConfigError, door
from bnrepro import distributed as dist
from bnrepro.data import check_available
from bnrepro.identity import RunLock, RunLocked, claim_dir, refuse_foreign, restore_hydra
from bnrepro.loop import code_version, fit, pick_device, status_record
from bnrepro.rundir import (CONFIG, FAILED, FINISHED, HYDRA, OWN, STARTED, SUMMARY, Damaged, holds_results, read_summary,
                            write_status, write_summary)


class JobFailed(CompactHydraException):
    """Raised by a failed job of a multirun: Hydra lets the other jobs finish, then exits non-zero."""


def _read_summary(run_dir: Path) -> dict | None:
    """The run's summary; None when it has none yet or it is unreadable (then the run is resumed or rerun)."""
    if not (run_dir / SUMMARY).exists():
        return None
    try:
        return read_summary(run_dir)
    except Damaged as e:
        print(f"warning: {run_dir}/{e}: the run is resumed or rerun", file=sys.stderr)
        return None


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if isinstance(e, ConfigError) else f"{type(e).__name__}: {text}"


def train(cfg: DictConfig, run_dir: str | Path | None = None, multirun: bool = False,
          settings: DictConfig | None = None) -> dict:
    """Run one training job in run_dir (default: Hydra's output dir) and return its summary.

    The config and its dataset are checked first (nothing is written for a bad one), and a dir that holds
    anything but a run is refused. One process at a time trains a run dir (identity.RunLock: a second one
    exits 2 naming the holder, or waits with trainer.wait_for_lock=true, as a sweep's jobs always do, so two
    identical sweeps train each run once). A run dir belongs to one config (its hash): a finished run of this
    config is not repeated, a started one resumes, one of another config is refused (or moved aside with
    trainer.overwrite=true). summary.json says `started` from then on; any exception is recorded there as
    status `failed` with a one-line `error`, then raised; a SIGTERM as `interrupted`.

    `cfg` is the config as composed: the run's identity and records. The trainer reads `settings`, the checked
    config with every key typed and present (door.checked; given when the caller checked it already).
    """
    settings = settings or door.checked(cfg)
    check_available(settings.data)
    run_dir = Path(run_dir or HydraConfig.get().runtime.output_dir)
    refuse_foreign(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not dist.is_main():  # rank 0 owns the dir and its files; the others only train
        return fit(settings, run_dir, multirun=multirun)
    try:
        lock = RunLock(run_dir, wait=settings.trainer.wait_for_lock or multirun).__enter__()
    except RunLocked:
        restore_hydra(run_dir)  # this launch's Hydra rewrote .hydra/ of the run the holder trains
        raise
    try:
        return _train_locked(cfg, settings, run_dir, multirun)
    finally:
        lock.__exit__()


def _train_locked(cfg: DictConfig, settings: DictConfig, run_dir: Path, multirun: bool) -> dict:
    h = claim_dir(cfg, run_dir, overwrite=settings.trainer.overwrite, code=code_version())
    summary = _read_summary(run_dir)
    if summary and summary.get("status") in FINISHED:
        print(f"{run_dir}: already {summary['status']} (config {h}), skipped", file=sys.stderr)
        return summary
    config_path = run_dir / CONFIG
    if not config_path.exists():  # Hydra writes it for CLI runs; direct calls get it here
        config_path.parent.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, config_path, resolve=True)
    try:
        write_summary(run_dir, status_record(settings, h, STARTED))
        return fit(settings, run_dir, multirun=multirun, config_hash=h)
    except Exception as e:
        write_status(run_dir, status_record(settings, h, FAILED, error=one_line(e)))
        raise


def remove_stub(run_dir: Path) -> None:
    """Remove what Hydra wrote for a job refused before it started (.hydra/ and an empty log), unless the dir
    holds a run; otherwise put that run's own .hydra/ back."""
    if (run_dir / OWN).exists() or holds_results(run_dir):
        restore_hydra(run_dir)
        return
    if run_dir.is_dir() and all(p.name == HYDRA or p.suffix == ".log" for p in run_dir.iterdir()):
        shutil.rmtree(run_dir, ignore_errors=True)


def fail(e: BaseException, run_dir: Path, multirun: bool, code: int) -> None:
    """One `error:` line; exit with code, or in a sweep, let the others finish and fail the sweep."""
    print(f"error: {one_line(e)}" + (f" [{run_dir}]" if multirun else ""), file=sys.stderr, flush=True)
    if code != 2 and door.env_flag("HYDRA_FULL_ERROR"):
        import traceback

        traceback.print_exception(e)
    if multirun:
        raise JobFailed(f"error: a job of this sweep failed ({run_dir}); the others ran; see the failed "
                        "runs' summary.json") from None
    sys.exit(code)


def interrupted(summary: dict, run_dir: Path, multirun: bool) -> None:
    """A preempted run is not a success: exit 128 + the signal's number (143 for SIGTERM), as a shell reports a
    process the signal killed, so a scheduler or script tells it from a finished run; in a sweep, fail the
    sweep once the other jobs are done."""
    if multirun:
        raise JobFailed(f"error: a job of this sweep was interrupted ({run_dir}): rerun the sweep to resume it")
    sys.exit(128 + signal.Signals[summary.get("signal", "SIGTERM")].value)


def shared_run_dir(own: Path) -> Path:
    """All torchrun ranks use rank 0's Hydra output dir (their own timestamps may differ by a second); a rank
    whose Hydra made another dir removes what Hydra put there."""
    shared = Path(dist.broadcast_object(str(own)))
    if shared != own and own.is_dir():
        shutil.rmtree(own / HYDRA, ignore_errors=True)
        for log in own.glob("*.log"):
            log.unlink()
        with_parents = [own, *own.parents]
        for d in with_parents[:2]:  # the run dir and its name folder, only if now empty
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
    return shared


# an absolute config path: the same tree whether this module runs as __main__ or is imported (bnrepro/suite.py),
# where Hydra would read a relative one as a package path
@hydra.main(version_base="1.3", config_path=str(CONFIGS), config_name="train")
def hydra_main(cfg: DictConfig) -> None:
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        settings = door.checked(cfg)
        check_available(settings.data)
    except ConfigError as e:
        remove_stub(run_dir)
        fail(e, run_dir, multirun, 2)
    summary = {}
    try:
        dist.init(pick_device(settings.trainer.device).type)
        run_dir = shared_run_dir(run_dir)
        summary = train(cfg, run_dir, multirun=multirun, settings=settings)
    except ConfigError as e:
        fail(e, run_dir, multirun, 2)
    except Exception as e:  # noqa: BLE001 - recorded in summary.json by train(); reported in one line here
        fail(e, run_dir, multirun, 1)
    finally:
        dist.teardown(finished=bool(summary))
    if summary.get("status") == "interrupted":
        interrupted(summary, run_dir, multirun)


def main() -> None:
    """The command line: checked before Hydra writes anything (door.check), then Hydra runs the job(s)."""
    try:
        door.check(sys.argv[1:])
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    hydra_main()


if __name__ == "__main__":
    main()
