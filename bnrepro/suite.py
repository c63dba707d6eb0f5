"""python -m bnrepro.suite [EXPERIMENT ...] -- [OVERRIDE ...]: every experiment's sweep, one after another, in
this one process (scripts/reproduce.sh calls it; `make reproduce`).

Why one process: a sweep started as its own `python -m bnrepro.train -m ...` pays for a fresh launcher and, with
the joblib launcher, two fresh worker processes, each importing torch, W&B and the data libraries (~7 CPU s a
worker, ~6 s a launcher: scripts/profile_suite.py). Sixteen experiments paid that sixteen times, the largest
fixed cost of the cpu suite. Here Hydra runs each experiment's multirun in turn in this process, and joblib's
loky executor keeps the same workers for all of them (it is reused while its settings match). Each experiment
is still exactly `python -m bnrepro.train -m experiment=E scale=S hydra/launcher=L hydra.sweep.dir=RUNS/E
OVERRIDES...`: same configs, same run dirs, same numbers.

Streams (--streams K, joblib only; scripts/reproduce.sh gives K = the cores at cpu scale): one experiment's
multirun ends with its last, longest jobs while the other workers wait for the next experiment; at cpu scale that
idled ~2 of the suite's 33 minutes. With K streams, K processes each take the next task from one queue and run its
jobs one after another (hydra.launcher.n_jobs=1), a task being one experiment at one seed of its sweep's seed axis
(`seed=S`): no stream waits for another until the last tasks. Every job is the same job with the same run dir and
config (a run's numbers do not depend on how it was launched); only the order they run in changes.

Progress: task k of N, runs done and skipped, ETA. A failed task stops the suite (exit 1; streams finish the task
they are on) unless --keep-going, which runs the others and exits 1 at the end naming the failures."""
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


def seeds_of(experiment: str, scale: str, overrides: list[str]) -> list[str] | None:
    """The values of the experiment's seed axis as `python -m bnrepro.train -m experiment=E scale=S OVERRIDES`
    sweeps it; None where it sweeps no seed (then its task is the whole experiment)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra_plugins.bnrepro_launcher import sweep_configs

    from bnrepro import CONFIGS

    master, _ = sweep_configs(CONFIGS, [f"experiment={experiment}", f"scale={scale}", *overrides])
    params = master.hydra.sweeper.params or {}
    given = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") == "seed"]
    line = given[-1] if given else (f"seed={params['seed']}" if "seed" in params else None)
    if line is None:
        return None
    parsed = OverridesParser.create().parse_overrides([line])[0]
    return list(parsed.sweep_string_iterator()) if parsed.is_sweep_override() else [parsed.get_value_element_as_str()]


def tasks(experiments: list[str], args, overrides: list[str]) -> list[tuple[str, str, list[str]]]:
    """(experiment, label, the sweep's argv) per task: one per experiment, or with streams one per seed."""
    out = []
    for experiment in experiments:
        base = [f"experiment={experiment}", f"scale={args.scale}", f"hydra/launcher={args.launcher}",
                f"hydra.sweep.dir={args.runs / experiment}", *overrides]
        seeds = seeds_of(experiment, args.scale, overrides) if args.streams > 1 else None
        if not seeds:
            out.append((experiment, experiment, base))
        else:
            out += [(experiment, f"{experiment} seed={s}", [*base, f"seed={s}", "hydra.launcher.n_jobs=1"])
                    for s in seeds]
    return out


def _task(argv: list[str]) -> tuple[int, int]:
    """A stream's task, in its own process: the sweep's exit code and wall seconds."""
    t0 = time.monotonic()
    return sweep(argv), int(time.monotonic() - t0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bnrepro.suite", description=__doc__.split("\n")[0])
    parser.add_argument("experiments", nargs="*", help="default: every configs/experiment/*.yaml, in claim order")
    parser.add_argument("--scale", default="cpu")
    parser.add_argument("--launcher", default="joblib")
    parser.add_argument("--runs", type=Path, required=True, help="the run dirs: RUNS/<experiment>/<job>")
    parser.add_argument("--keep-going", action="store_true")
    parser.add_argument("--streams", type=int, default=1,
                        help="K processes taking experiment-seed tasks from one queue, each running its jobs one "
                             "at a time (joblib launcher only; default 1: one experiment at a time, its jobs in "
                             "parallel)")
    argv = sys.argv[1:] if argv is None else argv
    cut = argv.index("--") if "--" in argv else len(argv)  # after --: overrides appended to every sweep
    args, overrides = parser.parse_args(argv[:cut]), argv[cut + 1:]
    if not args.experiments:
        from bnrepro.arms import EXPERIMENTS
        args.experiments = list(EXPERIMENTS)
    if args.streams > 1 and args.launcher != "joblib":
        print(f"error: --streams {args.streams} needs --launcher joblib (got {args.launcher}): drop --streams",
              file=sys.stderr)
        return 2
    todo = tasks(args.experiments, args, overrides)
    failed = (in_streams if args.streams > 1 else in_turn)(todo, args)
    if failed and not args.keep_going:
        print(f"reproduce: stopped at {failed[0]}; rerun to resume, or KEEP_GOING=1 to run the other experiments",
              file=sys.stderr)
        return 1
    if failed:
        print(f"reproduce: {len(failed)} experiment(s) FAILED: {' '.join(failed)} (their failed runs are counted "
              "in the report)", file=sys.stderr)
        return 1
    return 0


def in_turn(todo: list[tuple[str, str, list[str]]], args) -> list[str]:
    """Run the tasks one after another in this process; the failed tasks' labels. Without --keep-going the first
    failure stops it."""
    start, failed, n = time.monotonic(), [], len(todo)
    for k, (experiment, label, sweep_argv) in enumerate(todo, 1):
        t0, folder = time.monotonic(), args.runs / experiment
        before = finished_runs(folder)
        print(f"[{k}/{n}] experiment {label} (scale={args.scale}, launcher={args.launcher}) -> {folder}",
              flush=True)
        code = sweep(sweep_argv)
        if code != 0:
            print(f"[{k}/{n}] {label} FAILED (exit {code}) after {int(time.monotonic() - t0)} s: see the error "
                  f"lines above and the failed runs' summary.json in {folder}", file=sys.stderr, flush=True)
            failed.append(label)
            if not args.keep_going:
                break
            continue
        print(progress_line(k, n, label, before, finished_runs(folder), int(time.monotonic() - t0),
                            int(time.monotonic() - start)), flush=True)
    return failed


def in_streams(todo: list[tuple[str, str, list[str]]], args) -> list[str]:
    """Run the tasks in args.streams processes, each taking the next from one queue; the failed tasks' labels.
    Without --keep-going a failure cancels the tasks not started (the running ones finish)."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    start, failed, n, done = time.monotonic(), [], len(todo), 0
    # spawn: a fresh interpreter per stream (this process may hold threads; torch is imported by the streams)
    with ProcessPoolExecutor(args.streams, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending = {pool.submit(_task, argv): (experiment, label) for experiment, label, argv in todo}
        print(f"suite: {n} tasks (experiment x seed) in {args.streams} streams (scale={args.scale}) -> {args.runs}",
              flush=True)
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                experiment, label = pending.pop(future)
                if future.cancelled():
                    continue
                done += 1
                try:
                    code, took = future.result()
                except Exception as error:  # noqa: BLE001 - a stream that died (killed, out of memory)
                    code, took = 1, 0
                    print(f"error: {label}: its stream died ({type(error).__name__}: {error})", file=sys.stderr)
                if code != 0:
                    print(f"[{done}/{n}] {label} FAILED (exit {code}) after {took} s: see the error lines above and "
                          f"the failed runs' summary.json in {args.runs / experiment}", file=sys.stderr, flush=True)
                    failed.append(label)
                    if not args.keep_going:
                        for other in pending:
                            other.cancel()
                    continue
                so_far = int(time.monotonic() - start)
                print(f"[{done}/{n}] {label}: done in {minutes(took)}, {finished_runs(args.runs / experiment)} runs "
                      f"finished in {args.runs / experiment}"
                      + (f"; ETA {minutes(so_far * (n - done) // done)} for the other {n - done}" if n > done else ""),
                      flush=True)
    return failed


if __name__ == "__main__":
    sys.exit(main())
