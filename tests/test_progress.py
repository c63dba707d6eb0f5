"""What a user sees while runs train: labelled, rate-limited progress lines, one summary line per run, and
`make reproduce`'s experiment index, run counts and ETA."""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

from bnrepro.progress import Progress, summary_line
from conftest import ROOT


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_log_lines_are_labelled_and_rate_limited():
    clock, out = FakeClock(), io.StringIO()
    progress = Progress("c2_lr[model.norm=bn,seed=1]", total=100, mode="log", every_s=10, stream=out, clock=clock)
    for step, t in ((10, 1), (20, 5), (30, 12), (40, 13), (90, 14), (100, 15)):
        for _ in range(10):
            progress.advance()  # the per-step call: a no-op without a bar
        clock.now = t
        progress.evaluated(step, loss=1.0 / step, acc=step / 100)
    progress.finish({"status": "completed", "final_acc": 0.97, "wall_s": 15.2}, "runs/x")
    lines = out.getvalue().splitlines()
    # the first, one per 10 s, the last; each one write of one labelled line
    assert [re.search(r"step (\d+)/100", line).group(1) for line in lines[:-1]] == ["10", "30", "100"]
    assert all(line.startswith("c2_lr[model.norm=bn,seed=1]: ") for line in lines)
    assert "10.0 steps/s" in lines[0] and "ETA 0:09" in lines[0] and "test acc 0.1000" in lines[0]
    assert lines[-1] == ("c2_lr[model.norm=bn,seed=1]: completed score 0.9700 (test acc at the last eval) "
                         "in 15.2 s, run dir runs/x")
    progress.finish({"status": "completed"}, "runs/x")  # at most one summary line per run
    assert len(out.getvalue().splitlines()) == len(lines)


def test_summary_line_prefers_the_score():
    line = summary_line("fig1", {"status": "diverged", "score": 0.0, "score_k": 3, "final_acc": 0.1,
                                 "wall_s": 2.0}, "runs/fig1/a")
    assert line == "fig1: diverged score 0.0000 (mean test acc over the last 3 evals) in 2.0 s, run dir runs/fig1/a"
    assert summary_line("fig1", {"status": "interrupted", "steps": 40, "signal": "SIGTERM", "wall_s": 1.0}, "d") == \
        "fig1: interrupted by SIGTERM after step 40: checkpoint saved, rerun the same command to resume; run dir d"
    assert "score n/a" in summary_line("fig1", {"status": "failed", "wall_s": 1.0}, "d")
    assert "(mean test acc over the last 1 eval)" in summary_line("f", {"status": "completed", "score": 0.5,
                                                                      "score_k": 1}, "d")


def test_bar_counts_every_step_and_quiet_modes_print_only_the_summary():
    out = io.StringIO()
    bar = Progress("fig1", total=50, initial=10, mode="bar", stream=out)
    for _ in range(40):
        bar.advance()
    assert bar.bar.n == 50
    bar.evaluated(50, 0.1, 0.9)
    bar.finish({"status": "completed", "final_acc": 0.9, "wall_s": 1.0}, "d")
    assert "acc=0.900" in out.getvalue() and "step/s" in out.getvalue()
    assert out.getvalue().rstrip().endswith("fig1: completed score 0.9000 (test acc at the last eval) in 1.0 s, run dir d")
    assert Progress("x", 10, mode="auto", stream=io.StringIO()).mode == "log"  # not a terminal: no bar
    # mode none: the summary line only; a DDP rank other than 0: nothing at all
    for kwargs, expected in (({"mode": "none"}, 1), ({"mode": "bar", "enabled": False}, 0)):
        out = io.StringIO()
        progress = Progress("x", 10, stream=out, **kwargs)
        progress.advance()
        progress.evaluated(10, 0.1, 0.9)
        progress.finish({"status": "completed", "final_acc": 0.9, "wall_s": 1.0}, "d")
        assert out.getvalue().count("\n") == expected


def test_joblib_multirun_lines_are_labelled_and_each_run_ends_with_one_summary_line(tmp_path):
    env = {**os.environ, "WANDB_MODE": "disabled"}
    res = subprocess.run([sys.executable, "-m", "bnrepro.train", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                          "data=digits", "trainer.max_steps=40", "trainer.eval_every=10", "logger=none", "seed=0,1",
                          f"hydra.sweep.dir={tmp_path}"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stderr.splitlines()
    progress = [line for line in lines if " steps/s, ETA " in line]
    for seed in (0, 1):
        run_dir = tmp_path / f"data=digits,seed={seed},trainer.eval_every=10,trainer.max_steps=40"
        label = f"default[{run_dir.name}]"
        own = [line for line in lines if line.startswith(label + ": ")]
        steps = [int(m.group(1)) for line in own if (m := re.search(r": step (\d+)/40 ", line))]
        assert steps[0] == 10 and steps[-1] == 40 and len(steps) <= 4, own  # first and last, rate-limited
        summary = json.loads((run_dir / "summary.json").read_text())
        ends = [line for line in own if re.search(r": \w+ score ", line)]
        assert ends == [f"{label}: completed score {summary['score']:.4f} (mean test acc over the last "
                        f"{summary['score_k']} evals) in {summary['wall_s']:.1f} s, run dir {run_dir}"], own
        assert own[-1] == ends[0]
    assert progress and all(line.startswith("default[data=digits,seed=") for line in progress)


def test_reproduce_prints_the_index_run_counts_and_eta(tmp_path):
    # the same tiny experiment twice: the second pass finds its run finished and skips it, as a resumed suite does
    env = {**os.environ, "LAUNCHER": "basic", "RUNS": str(tmp_path / "runs"), "OUT": str(tmp_path / "out"),
           "WANDB_MODE": "disabled", "PYTHON": sys.executable, "EXPERIMENTS": "c4_drift c4_drift",
           "EXTRA": "model.norm=bn data=digits seed=0 trainer.max_steps=10 trainer.eval_every=5 logger=none"}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "reproduce.sh")], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    index = [line for line in done.stdout.splitlines() if re.match(r"\[\d+/\d+\] ", line)]
    assert index[0] == f"[1/2] experiment c4_drift (scale=cpu, launcher=basic) -> {tmp_path}/runs/c4_drift"
    assert re.fullmatch(r"\[1/2\] c4_drift: 1 runs done, 0 skipped \(already finished\), in 0 min \d\d s; "
                        r"ETA 0 min \d\d s for the other 1 experiment\(s\) \(mean 0 min \d\d s each so far\)",
                        index[1]), index
    assert index[2].startswith("[2/2] experiment c4_drift")
    assert re.fullmatch(r"\[2/2\] c4_drift: 0 runs done, 1 skipped \(already finished\), in 0 min \d\d s", index[3])
