"""python -m bnrepro.suite [EXPERIMENT ...] -- [OVERRIDE ...]: every experiment's sweep, one after another, in
this one process (scripts/reproduce.sh calls it; `make reproduce`).

Why one process: a sweep started as its own `python -m bnrepro.train -m ...` pays for a fresh launcher and, with
the joblib launcher, two fresh worker processes, each importing torch, W&B and the data libraries (~7 CPU s a
worker, ~6 s a launcher: scripts/profile_suite.py). Sixteen experiments paid that sixteen times, the largest
fixed cost of the cpu suite. Here Hydra runs each experiment's multirun in turn in this process, and joblib's
loky executor keeps the same workers for all of them (it is reused while its settings match). Each experiment
is still exactly `python -m bnrepro.train -m experiment=E scale=S hydra/launcher=L hydra.sweep.dir=RUNS/E
OVERRIDES...`: same configs, same run dirs, same numbers.

Progress: experiment k of N, runs done and skipped, ETA. A failed experiment stops the suite (exit 1) unless
--keep-going, which runs the others and exits 1 at the end naming the failures."""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

FINISHED = re.compile(r'"status": "(completed|diverged)"')


def finished_runs(folder: Path) -> int:
    """summary.json files under folder whose status is finished (the trainer skips those runs)."""
    return sum(1 for p in folder.rglob("summary.json") if FINISHED.search(p.read_text(errors="replace")))


def minutes(seconds: int) -> str:
    return f"{seconds // 60} min {seconds % 60:02d} s"


def progress_line(k: int, n: int, experiment: str, before: int, after: int, took: int, so_far: int) -> str:
    line = (f"[{k}/{n}] {experiment}: {after - before} runs done, {before} skipped (already finished), in "
            f"{minutes(took)}")
    left = n - k
    if left > 0:
        line += (f"; ETA {minutes(so_far * left // k)} for the other {left} experiment(s) (mean "
                 f"{minutes(so_far // k)} each so far)")
    return line


def sweep(argv: list[str]) -> int:
    """One experiment's multirun in this process, as `python -m bnrepro.train -m ARGV` would run it: its exit
    code (0, 1 for a failed job, 2 for a refused command line)."""
    from hydra.core.global_hydra import GlobalHydra

    from bnrepro import train

    GlobalHydra.instance().clear()  # the previous experiment's
    saved = sys.argv
    sys.argv = ["bnrepro.train", "-m", *argv]
    try:
        train.main()
        return 0
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except Exception as error:  # noqa: BLE001 - Hydra reports a failed job by raising; the suite goes on or stops
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        return 1
    finally:
        sys.argv = saved
        GlobalHydra.instance().clear()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bnrepro.suite", description=__doc__.split("\n")[0])
    parser.add_argument("experiments", nargs="*", help="default: every configs/experiment/*.yaml, in claim order")
    parser.add_argument("--scale", default="cpu")
    parser.add_argument("--launcher", default="joblib")
    parser.add_argument("--runs", type=Path, required=True, help="the run dirs: RUNS/<experiment>/<job>")
    parser.add_argument("--keep-going", action="store_true")
    argv = sys.argv[1:] if argv is None else argv
    cut = argv.index("--") if "--" in argv else len(argv)  # after --: overrides appended to every sweep
    args, overrides = parser.parse_args(argv[:cut]), argv[cut + 1:]
    if not args.experiments:
        from bnrepro.arms import EXPERIMENTS
        args.experiments = list(EXPERIMENTS)
    start, failed, n = time.monotonic(), [], len(args.experiments)
    for k, experiment in enumerate(args.experiments, 1):
        t0, folder = time.monotonic(), args.runs / experiment
        before = finished_runs(folder)
        print(f"[{k}/{n}] experiment {experiment} (scale={args.scale}, launcher={args.launcher}) -> {folder}",
              flush=True)
        code = sweep([f"experiment={experiment}", f"scale={args.scale}", f"hydra/launcher={args.launcher}",
                      f"hydra.sweep.dir={folder}", *overrides])
        if code != 0:
            print(f"[{k}/{n}] {experiment} FAILED (exit {code}) after {int(time.monotonic() - t0)} s: see the error "
                  f"lines above and the failed runs' summary.json in {folder}", file=sys.stderr, flush=True)
            failed.append(experiment)
            if not args.keep_going:
                print(f"reproduce: stopped at {experiment}; rerun to resume, or KEEP_GOING=1 to run the other "
                      "experiments", file=sys.stderr)
                return 1
            continue
        print(progress_line(k, n, experiment, before, finished_runs(folder), int(time.monotonic() - t0),
                            int(time.monotonic() - start)), flush=True)
    if failed:
        print(f"reproduce: {len(failed)} experiment(s) FAILED: {' '.join(failed)} (their failed runs are counted "
              "in the report)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
