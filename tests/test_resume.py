"""Checkpoints and resume: a run stopped by SIGTERM (or killed) and rerun ends with exactly the metrics of an
uninterrupted run; finished runs are skipped; the W&B run continues under the same id; W&B failures
never stop training."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from bnrepro.checkpoint import load_checkpoint, save_checkpoint
from bnrepro.tracking import Tracker
from bnrepro.train import train
from conftest import ROOT, compose_cfg

# threads=1 everywhere: the thread count changes float summation order, and these tests compare exactly
RUN = ("trainer.eval_every=20", "trainer.ckpt_every=30", "trainer.threads=1", "logger=none",
       "trainer.final_eval=[ema,batch]")
TIMING = ("wall_s", "examples_per_s")


def rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def without_timing(rs):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rs]


def comparable(summary):
    """The summary's numbers: not its wall time, nor the code version (another process may see the working tree
    after an edit)."""
    return {k: v for k, v in summary.items() if k not in ("wall_s", "train_s", "train_cpu_s", "git_rev", "git_dirty", "code_hash")}


def stop_after_row(monkeypatch, step, how):
    """Make the run stop right after it logs the row of `step`: by a SIGTERM to itself, or by a crash."""
    real_log = Tracker.log

    def log(self, row):
        real_log(self, row)
        if row["step"] == step:
            if how == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)
            else:
                raise RuntimeError("simulated crash")

    monkeypatch.setattr(Tracker, "log", log)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("reference")
    summary = train(compose_cfg("trainer.max_steps=100", "model.dropout=0.1", *RUN), run_dir=run_dir)
    return rows(run_dir), summary


def test_sigterm_in_process_saves_and_resume_is_exact(tmp_path, monkeypatch, reference):
    """Dropout draws from the global RNG, so equality also checks that RNG states are restored."""
    cfg = compose_cfg("trainer.max_steps=100", "model.dropout=0.1", *RUN)
    stop_after_row(monkeypatch, 40, "sigterm")
    out = train(cfg, run_dir=tmp_path)
    assert out == {"status": "interrupted", "steps": 40, "signal": "SIGTERM"}  # read before step 41 starts
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "interrupted"
    assert load_checkpoint(tmp_path / "checkpoints")["state"]["step"] == 40
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    monkeypatch.undo()
    summary = train(cfg, run_dir=tmp_path)
    ref_rows, ref_summary = reference
    assert without_timing(rows(tmp_path)) == without_timing(ref_rows)
    assert comparable(summary) == comparable(ref_summary)


def test_crash_after_checkpoint_truncates_rows_and_resumes_exactly(tmp_path, monkeypatch, reference):
    """A hard stop leaves rows written after the last checkpoint (step 30 here, or a newer best): the
    resumed run drops them and writes them again, once."""
    cfg = compose_cfg("trainer.max_steps=100", "model.dropout=0.1", *RUN)
    stop_after_row(monkeypatch, 80, "crash")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, run_dir=tmp_path)
    assert [r["step"] for r in rows(tmp_path)] == [20, 40, 60, 80]
    monkeypatch.undo()
    summary = train(cfg, run_dir=tmp_path)
    ref_rows, ref_summary = reference
    assert without_timing(rows(tmp_path)) == without_timing(ref_rows)
    assert comparable(summary) == comparable(ref_summary)


# three processes, ~40 s on 2 cores: the real preemption path, so it runs by default
def test_sigterm_subprocess_then_rerun_equals_uninterrupted(tmp_path):
    """The real thing: a CLI run is sent SIGTERM mid-run by another process, exits 143 (128 + SIGTERM, as a shell
    reports it: not a success) with a checkpoint, and the same command finishes it with the metrics of an
    uninterrupted run."""
    args = ["trainer.max_steps=1500", "trainer.eval_every=100", "trainer.ckpt_every=1000", "trainer.threads=1",
            "logger=none"]
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "bnrepro.train", *args, f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 120
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be interrupted"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "SIGTERM after step" in err
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "interrupted"
    stopped_at = load_checkpoint(tmp_path / "run" / "checkpoints")["state"]["step"]
    assert 200 <= stopped_at < 1500
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert f"resumed at step {stopped_at}" in res.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    reference = train(compose_cfg(*args), run_dir=tmp_path / "reference")
    assert without_timing(rows(tmp_path / "run")) == without_timing(rows(tmp_path / "reference"))
    assert comparable(summary) == comparable(reference)


def test_finished_and_diverged_runs_are_skipped_by_the_cli(tmp_path):
    diverging = ["model.norm=none", "model.act=relu", "model.init_std=1.0", "optim.lr=1000",
                 "trainer.max_steps=200", "trainer.eval_every=10", "logger=none"]
    summary = train(compose_cfg(*diverging), run_dir=tmp_path)
    assert summary["status"] == "diverged" and summary["diverged_at"] < 200
    assert not (tmp_path / "checkpoints" / "last.pt").exists() or \
        load_checkpoint(tmp_path / "checkpoints")["state"]["step"] < summary["diverged_at"]
    before = (tmp_path / "metrics.jsonl").read_text()
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    again = subprocess.run([sys.executable, "-m", "bnrepro.train", *diverging, f"hydra.run.dir={tmp_path}"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "already diverged" in again.stderr
    assert (tmp_path / "metrics.jsonl").read_text() == before


def test_checkpoint_files_are_atomic_and_keep_best(tmp_path):
    save_checkpoint(tmp_path, {"step": 1, "w": torch.ones(2)}, is_best=True)
    save_checkpoint(tmp_path, {"step": 2, "w": torch.zeros(2)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt", "previous.pt"]  # no tmp files
    assert load_checkpoint(tmp_path)["step"] == 2 and load_checkpoint(tmp_path, "best.pt")["step"] == 1
    assert load_checkpoint(tmp_path, "previous.pt")["step"] == 1  # the fallback when last.pt is unreadable
    assert load_checkpoint(tmp_path / "nothing") is None


def test_best_checkpoint_holds_the_best_validation_eval(tmp_path):
    """best.pt is chosen on validation accuracy, never on test accuracy."""
    summary = train(compose_cfg("trainer.max_steps=60", *RUN), run_dir=tmp_path)
    best = load_checkpoint(tmp_path / "checkpoints", "best.pt")
    assert best["state"]["best_val_acc"] == summary["best_val_acc"] == best["state"]["row"]["val_acc"]
    assert best["state"]["step"] == summary["best_val_step"]
    assert summary["test_acc_at_best_val"] == best["state"]["row"]["test_acc"]
    assert load_checkpoint(tmp_path / "checkpoints")["state"]["step"] == 60


def test_resumed_run_continues_the_same_wandb_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose_cfg("trainer.max_steps=60", "trainer.eval_every=20", "trainer.threads=1", "logger=wandb")
    stop_after_row(monkeypatch, 20, "sigterm")
    assert train(cfg, run_dir=tmp_path)["status"] == "interrupted"
    monkeypatch.undo()
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert train(cfg, run_dir=tmp_path)["status"] == "completed"
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 2
    # offline-run-<date>_<time>-<id>, with a "-1" suffix when both parts start within the same second
    ids = {re.fullmatch(r"offline-run-\d{8}_\d{6}-([0-9a-z]+)(-\d+)?", r.name).group(1) for r in runs}
    assert len(ids) == 1 and ids == {load_checkpoint(tmp_path / "checkpoints")["state"]["wandb_id"]}


def test_unwritable_wandb_dir_never_kills_the_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    (tmp_path / "wandb").write_text("a file where W&B wants its folder")
    summary = train(compose_cfg("trainer.max_steps=40", "trainer.eval_every=20", "logger=wandb"), run_dir=tmp_path)
    assert summary["status"] == "completed" and len(rows(tmp_path)) == 2
