"""Where the claims suite's CPU time goes: training steps or fixed cost (`make profile-suite`).

    python scripts/profile_suite.py suite [--out DIR] [EXPERIMENT ...]
        `make reproduce` itself (scripts/reproduce.sh: every experiment, then the report) into DIR/runs and
        DIR/results, timed: its wall time, the CPU time of the suite's processes (the suite, its workers, W&B's
        service) and of the report, and the share of the suite's CPU time spent in training steps (summary.json's
        train_cpu_s); written to DIR/profile.json. The machine should be otherwise idle.
    python scripts/profile_suite.py sweep [c2_lr c5_dropout] [--extra seed=0,1] [--out DIR]
        each experiment's multirun as scripts/reproduce.sh launches it (joblib), with the CPU time of the
        launcher, its workers and W&B's service (read from /proc), and the runs' CPU time in training steps
        (summary.json's train_cpu_s); then the whole suite extrapolated with the runs per experiment counted in --main-runs.
    python scripts/profile_suite.py jobs c2_lr [--extra seed=0]
        the same jobs one after another in this process, as a joblib worker runs them, with the CPU time of each
        phase of a run (data, model, W&B, evaluations, checkpoints, summary, steps...); the first job pays the
        worker's lazy imports.
    python scripts/profile_suite.py imports
        the start-up of a process: interpreter, bnrepro.train and what a job imports before training.

CPU time, not wall time: the suite's cost on a machine that runs other work too. Nothing here changes a run; the
run dirs go to a temporary folder unless --out says otherwise.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")
FINISHED = ("completed", "diverged")


class TreeCPU:
    """The CPU seconds of a process and all its descendants (joblib's loky workers, W&B's service, git), read
    from /proc every `every` s: rusage would miss the workers, which their launcher never waits for. The last
    `every` s of a process's life are missed (a git call lives milliseconds)."""

    def __init__(self, pid: int, every: float = 0.1):
        self.root, self.every, self.seen = pid, every, {}  # pid -> (command line, CPU seconds)
        self.when: dict[int, tuple[float, float]] = {}  # pid -> (first, last) time a poll saw it
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self):
        while not self.done.is_set():
            procs = {}
            for d in Path("/proc").iterdir():
                if not d.name.isdigit():
                    continue
                try:
                    stat = (d / "stat").read_text()
                    cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                fields = stat[stat.rindex(")") + 2:].split()  # after "pid (name) ": state, ppid, ... utime stime
                procs[int(d.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK, cmd)
            tree, new = {self.root}, {self.root}
            while new:
                new = {pid for pid, (ppid, _, _) in procs.items() if ppid in new} - tree
                tree |= new
            now = time.perf_counter()
            for pid in tree & procs.keys():  # an exited (zombie) process has an empty command line: keep the last
                self.seen[pid] = (procs[pid][2] or self.seen.get(pid, ("", 0.0))[0], procs[pid][1])
                self.when[pid] = (self.when.get(pid, (now, now))[0], now)
            self.done.wait(self.every)

    def stop(self) -> dict[str, float]:
        """CPU seconds by role: launcher (the main process, or bnrepro.suite), workers (loky's, or the suite's
        streams), wandb-core (W&B's service), report (bnrepro.report), other."""
        self.done.set()
        self.thread.join()
        roles = collections.Counter()
        for pid, (cmd, cpu) in self.seen.items():
            role = ("launcher" if pid == self.root or "bnrepro.suite" in cmd else "report" if "bnrepro.report" in cmd
                    else "wandb-core" if "wandb" in cmd
                    else "workers" if "LokyProcess" in cmd or "spawn_main" in cmd  # joblib's, or the suite's streams
                    else "other")
            roles[role] += cpu
        return dict(roles)

    def span(self, text: str) -> float:
        """Seconds between the first and the last poll that saw a process whose command line contains text."""
        times = [t for pid, (cmd, _) in self.seen.items() if text in cmd for t in self.when.get(pid, ())]
        return max(times) - min(times) if times else 0.0


def summaries(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.rglob("summary.json"))]


def suite(experiments: list[str], out: Path) -> None:
    """`make reproduce` (scripts/reproduce.sh) into out/runs and out/results, its CPU time by process and phase."""
    env = {**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "offline"), "RUNS": str(out / "runs"),
           "OUT": str(out / "results"), "PYTHON": sys.executable}
    if experiments:
        env["EXPERIMENTS"] = " ".join(experiments)
    t0 = time.perf_counter()
    proc = subprocess.Popen(["scripts/reproduce.sh"], cwd=ROOT, env=env)
    tree = TreeCPU(proc.pid)
    code = proc.wait()
    wall = time.perf_counter() - t0
    report_wall = tree.span("bnrepro.report")
    roles = tree.stop()
    report = roles.get("report", 0.0)
    runs = [s for s in summaries(out / "runs") if s.get("status") in FINISHED]
    train = sum(s.get("train_cpu_s") or 0.0 for s in runs)
    suite_cpu = sum(roles.values()) - report
    inside = sum((s.get("wall_s") or 0.0) - (s.get("train_s") or 0.0) for s in runs)
    row = {"exit": code, "runs": len(runs), "wall_s": wall, "report_wall_s": report_wall, "cpu_s": roles,
           "report_cpu_s": report, "suite_cpu_s": suite_cpu, "train_cpu_s": train,
           "in_runs_not_training_s": inside, "git_rev": _rev()}
    (out / "profile.json").write_text(json.dumps(row, indent=1))
    print(f"make reproduce (exit {code}): {len(runs)} runs, {wall / 60:.1f} min wall, of which the report "
          f"{report_wall / 60:.1f} min; CPU: " + ", ".join(f"{k} {v:.0f} s" for k, v in sorted(roles.items()))
          + f" (the report {report:.0f} s of it)")
    print(f"training steps {train:.0f} CPU s = {train / suite_cpu:.0%} of the suite's {suite_cpu:.0f} CPU s "
          f"(the report excluded), {train / (suite_cpu + report):.0%} with the report; inside the runs but not in "
          f"training steps (evaluations, probes, set-up; wall seconds): {inside:.0f} s")


def _rev() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()


def sweep(experiments: list[str], extra: list[str], out: Path) -> None:
    """Each experiment's multirun from the command line, its CPU time by process and in training steps."""
    env = {**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "offline")}
    rows = []
    for exp in experiments:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "bnrepro.train", "-m", f"experiment={exp}", "scale=cpu",
                                 "hydra/launcher=joblib", f"hydra.sweep.dir={out / exp}", *extra], cwd=ROOT,
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        tree = TreeCPU(proc.pid)
        if proc.wait():
            raise SystemExit(f"{exp}: the sweep failed (exit {proc.returncode}); rerun it by hand to see why")
        wall, roles = time.perf_counter() - t0, tree.stop()
        cpu = sum(roles.values())
        runs = [s for s in summaries(out / exp) if s.get("status") in FINISHED]
        train = sum(s.get("train_cpu_s") or 0.0 for s in runs)
        rows.append({"experiment": exp, "runs": len(runs), "wall": wall, "cpu": cpu, "roles": roles,
                     "train_cpu_s": train, "train_s": sum(s.get("train_s") or 0.0 for s in runs),
                     "wall_s": sum(s.get("wall_s") or 0.0 for s in runs),
                     "inside_each": [(s.get("wall_s") or 0.0) - (s.get("train_s") or 0.0) for s in runs]})
        print(f"{exp}: {len(runs)} runs in {wall:.1f} s wall, {cpu:.1f} CPU s ("
              + ", ".join(f"{k} {v:.1f}" for k, v in sorted(roles.items())) + f"); training steps {train:.1f} "
              f"CPU s = {train / max(cpu, 1e-9):.0%}; fixed cost {(cpu - train) / max(len(runs), 1):.2f} CPU s "
              "per run", flush=True)
    n = sum(r["runs"] for r in rows)
    cpu, train = sum(r["cpu"] for r in rows), sum(r["train_cpu_s"] for r in rows)
    print(f"subset: {n} runs, {cpu:.1f} CPU s, {train:.1f} in training steps: {train / cpu:.0%}; fixed cost "
          f"{(cpu - train) / n:.2f} CPU s per run")
    (out / "profile.json").write_text(json.dumps(rows, indent=1))


# what a joblib worker loads by the end of its first job (wandb.init imports its launch package, the first
# torch optimizer torch._dynamo, the digits loader scikit-learn)
WORKER_IMPORTS = "import bnrepro.train, wandb.sdk.launch, sklearn.datasets, torch._dynamo"


def extrapolate(rows_file: Path, main_runs: Path, workers: int = 2) -> None:
    """The whole suite from a measured subset. Fixed cost per experiment: its launcher, and the start-up of its
    `workers` joblib workers (their imports, measured here in a fresh interpreter); per run: the rest of the
    workers' and W&B's CPU time but the steps'. Training: main_runs' summaries (train_cpu_s, or where a run has
    none, its wall_s less the subset's median in-run fixed cost: wall time, so an estimate)."""
    rows = json.loads(rows_file.read_text())
    n, k = sum(r["runs"] for r in rows), len(rows)
    start = min(_cpu([sys.executable, "-c", WORKER_IMPORTS]) for _ in range(2))
    per_exp = sum(r["roles"].get("launcher", 0.0) for r in rows) / k + workers * start
    per_run = (sum(r["cpu"] - r["roles"].get("launcher", 0.0) - r["train_cpu_s"] for r in rows)
               - k * workers * start) / n
    inside = statistics.median(x for r in rows for x in r["inside_each"])
    train, estimated, suite_runs = 0.0, 0, collections.Counter()
    for s in summaries(main_runs):
        if s.get("status") not in FINISHED:
            continue
        suite_runs[s.get("name")] += 1
        estimated += "train_cpu_s" not in s
        train += s["train_cpu_s"] if "train_cpu_s" in s else max((s.get("wall_s") or 0.0) - inside, 0.0)
    fixed = per_exp * len(suite_runs) + per_run * sum(suite_runs.values())
    print(f"suite: fixed costs from {n} runs of {k} experiments ({per_exp:.1f} CPU s per experiment, of which "
          f"{workers} x {start:.1f} the workers' imports, + {per_run:.2f} per run) = {fixed:.0f} CPU s; training "
          f"{train:.0f} CPU s from {main_runs} ({estimated} runs' from wall_s - {inside:.2f} s, the median): "
          f"{train / (train + fixed):.0%} training")


class Phases:
    """CPU seconds per phase, outermost phase only (an evaluation inside final_evals counts as final_evals)."""

    def __init__(self):
        self.seconds, self.calls, self.active = collections.Counter(), collections.Counter(), False

    def wrap(self, owner, name: str, phase: str):
        real = getattr(owner, name)

        def timed(*a, **kw):
            if self.active:
                return real(*a, **kw)
            self.active, t0 = True, time.process_time()
            try:
                return real(*a, **kw)
            finally:
                self.seconds[phase] += time.process_time() - t0
                self.calls[phase] += 1
                self.active = False

        setattr(owner, name, timed)


def jobs(experiment: str, extra: list[str], out: Path) -> None:
    """The experiment's jobs in this process, each phase of each run timed (the first run pays the imports)."""
    t0 = time.process_time()
    from hydra import compose, initialize_config_dir

    from bnrepro import CONFIGS, door, loop, train as train_mod
    from bnrepro.tracking import Tracker
    print(f"import bnrepro.train: {time.process_time() - t0:.2f} CPU s")
    phases = Phases()
    for owner, name, phase in [
            (train_mod.door, "checked", "door.checked"), (train_mod, "check_available", "check_available"),
            (train_mod, "claim_dir", "identity (claim_dir)"), (loop, "load_data", "data"),
            (loop, "build_model", "model"), (loop, "build_optimizer", "optimizer"), (loop, "restore", "restore"),
            (Tracker, "_start_wandb", "W&B init"), (Tracker, "finish", "summary + W&B finish"),
            (Tracker, "log", "metrics rows"), (loop, "evaluate", "evaluations"), (loop, "save", "checkpoints"),
            (loop, "final_evals", "final evals"), (loop, "fixed_view", "probes at start/end"),
            (loop, "train_step", "training steps")]:
        phases.wrap(owner, name, phase)
    base = [f"experiment={experiment}", "scale=cpu"]
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        t0 = time.process_time()
        hcfg = compose(config_name="train", overrides=base + [p for p in extra if "," not in p],
                       return_hydra_config=True)
        given = {p.split("=")[0] for p in extra}  # the command line's value of a key replaces the sweep's
        params = [f"{k}={v}" for k, v in (hcfg.hydra.sweeper.params or {}).items() if k not in given] + extra
        job_list = door._jobs(params, multirun=True)
        cfgs = [door.cfg_without_hydra(compose(config_name="train", overrides=base + job, return_hydra_config=True))
                for job in job_list]
        compose_s = time.process_time() - t0
    print(f"compose {len(cfgs)} jobs: {compose_s:.2f} CPU s ({compose_s / len(cfgs):.2f} per job)")
    totals = []
    for i, (job, cfg) in enumerate(zip(job_list, cfgs)):
        before = phases.seconds.copy()
        t0 = time.process_time()
        summary = train_mod.train(cfg, out / experiment / ",".join(job), multirun=True)
        totals.append(time.process_time() - t0)
        got = phases.seconds - before
        print(f"job {i} {','.join(job)}: {totals[-1]:.2f} CPU s, train_cpu_s {summary.get('train_cpu_s', 0):.2f}; "
              + ", ".join(f"{k} {v:.3f}" for k, v in got.most_common()), flush=True)
    total = sum(totals)
    print(f"\n{len(totals)} jobs, {total:.2f} CPU s in train() ({total / len(totals):.2f} per job); per phase "
          "(first job included):")
    for phase, s in phases.seconds.most_common():
        print(f"  {phase:24s} {s:8.2f} s {s / total:6.1%}  {phases.calls[phase]:6d} calls")
    other = total - sum(phases.seconds.values())
    print(f"  {'other':24s} {other:8.2f} s {other / total:6.1%}")


def imports() -> None:
    """A process's start-up in fresh interpreters (CPU seconds, the best of 3); each line adds imports."""
    steps = ["pass", "import torch", "import bnrepro.train", "import bnrepro.train, bnrepro.claims",
             "import bnrepro.train, bnrepro.claims, wandb.sdk.launch, sklearn.datasets, torch._dynamo"]
    for code in steps:
        best = min(_cpu([sys.executable, "-c", code]) for _ in range(3))
        print(f"{best:6.2f} CPU s  python -c '{code}'")


def _cpu(cmd) -> float:
    """CPU seconds of a command (the process, waited for, and what it waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, cwd=ROOT, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["suite", "sweep", "jobs", "imports", "extrapolate"])
    ap.add_argument("experiments", nargs="*", help="default: every experiment (suite), c2_lr c5_dropout (others)")
    ap.add_argument("--extra", nargs="*", default=["seed=0,1"], help="overrides for every sweep")
    ap.add_argument("--out", type=Path, help="where the run dirs go (default: a temporary folder); "
                    "extrapolate reads OUT/profile.json")
    ap.add_argument("--main-runs", type=Path, default=ROOT / "runs" / "cpu",
                    help="the suite's run dirs whose training time the extrapolation reads")
    args = ap.parse_args()
    with contextlib.ExitStack() as stack:
        out = args.out or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="profile_suite_")))
        out.mkdir(parents=True, exist_ok=True)
        experiments = args.experiments or ([] if args.what == "suite" else ["c2_lr", "c5_dropout"])
        if args.what == "suite":
            suite(experiments, out)
        elif args.what == "sweep":
            sweep(experiments, args.extra, out)
            extrapolate(out / "profile.json", args.main_runs)
        elif args.what == "extrapolate":
            extrapolate(out / "profile.json", args.main_runs)
        elif args.what == "jobs":
            for exp in experiments:
                jobs(exp, args.extra, out)
        else:
            imports()


if __name__ == "__main__":
    main()
