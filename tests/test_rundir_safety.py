"""Run dirs under careless and hostile use (issue 19): never a folder of the user's, one writer per run, failure a
status even on a full disk, the code a run came from recorded, preemption an exit code, W&B's stall not the run's."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bnrepro import ConfigError
from bnrepro.identity import RunLock, RunLocked, claim_dir, config_hash, identity_config, same_config
from bnrepro.rundir import LOCK, OWN, read_config, upgrade, write_run
from bnrepro.train import train
from conftest import ROOT, compose_cfg
from test_integrity import rows, run_cli

TINY = ("trainer.max_steps=40", "trainer.eval_every=20", "logger=none", "trainer.progress=none")


def listing(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def fake_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (repo / "pyproject.toml").write_text("[project]\nname = 'mine'\n")
    (repo / "thesis.tex").write_text("\\chapter{Results}\n")
    return repo


# --- a run dir is never a folder of the user's -------------------------------------------------------------
def test_a_folder_of_the_users_is_refused_and_left_untouched_even_with_overwrite(tmp_path):
    """`hydra.run.dir=.` in a repository, then `trainer.overwrite=true`, used to move the repository aside."""
    repo = fake_repo(tmp_path)
    before = listing(repo)
    for extra in ((), ("optim.lr=0.5", "trainer.overwrite=true")):
        out = run_cli(*TINY, *extra, "hydra.run.dir=.", cwd=repo)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1, out.stderr
        assert lines[0].startswith(f"error: {repo} is not a run dir: it holds .git, pyproject.toml, thesis.tex")
        assert listing(repo) == before and sorted(p.name for p in repo.iterdir()) == [".git", "pyproject.toml",
                                                                                     "thesis.tex"]
    assert not (tmp_path / ".aside").exists()
    with pytest.raises(ConfigError, match="is not a run dir: it holds .git"):  # direct calls too
        train(compose_cfg(*TINY), run_dir=repo)
    assert listing(repo) == before


def test_overwrite_moves_only_the_runs_own_files(tmp_path):
    run_dir = tmp_path / "run"
    run_cli(*TINY, f"hydra.run.dir={run_dir}")
    own = sorted(p.name for p in run_dir.iterdir())
    assert own == [".bnrepro", ".hydra", LOCK, "checkpoints", "metrics.jsonl", "summary.json"]  # no train.log
    out = run_cli(*TINY, "optim.lr=0.5", "trainer.overwrite=true", f"hydra.run.dir={run_dir}")
    assert out.returncode == 0, out.stderr
    (aside,) = (tmp_path / ".aside").iterdir()
    assert sorted(p.name for p in aside.iterdir()) == [".bnrepro", ".hydra", "checkpoints", "metrics.jsonl",
                                                       "summary.json"]


def test_a_runs_own_leftovers_are_not_foreign(tmp_path):
    """Temporary files of a cut write (today's names and those of earlier versions) and Hydra's job log."""
    from bnrepro.identity import refuse_foreign

    for name in (".summary.json.tmp123", "summary.json.tmp", "metrics.tmp", ".metrics.jsonl.tmp9", "train.log",
                 "wandb", ".hydra", OWN, LOCK):
        (tmp_path / name).write_text("")
    refuse_foreign(tmp_path)
    (tmp_path / "notes.md").write_text("mine")
    with pytest.raises(ConfigError, match="it holds notes.md, which no run writes"):
        refuse_foreign(tmp_path)


# --- one writer per run -----------------------------------------------------------------------------------
def test_a_second_process_on_a_locked_run_exits_2_naming_the_holder(tmp_path):
    run_dir = tmp_path / "run"
    with RunLock(run_dir):
        out = run_cli(*TINY, f"hydra.run.dir={run_dir}")
        with pytest.raises(RunLocked, match=f"pid {os.getpid()} on"):
            train(compose_cfg(*TINY), run_dir=run_dir)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1
    assert f"is being trained by another process (pid {os.getpid()} on" in lines[0]
    assert "trainer.wait_for_lock=true" in lines[0]
    assert not (run_dir / "summary.json").exists() and not (run_dir / "metrics.jsonl").exists()


def test_wait_for_lock_waits_for_the_holder_then_trains(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "WANDB_MODE": "disabled"}
    with RunLock(run_dir):
        proc = subprocess.Popen([sys.executable, "-m", "bnrepro.train", *TINY, "trainer.wait_for_lock=true",
                                 f"hydra.run.dir={run_dir}"], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
        # Release only once the child says it waits: a fixed sleep raced a slow start (CI's import of torch
        # took longer than the sleep, so the child found the lock free and never waited).
        seen = []
        for line in proc.stderr:  # ends if the child exits without waiting
            seen.append(line)
            if "waiting for the process that trains it" in line:
                break
        assert seen and "waiting for the process that trains it" in seen[-1], "".join(seen)
        time.sleep(1)
        assert proc.poll() is None  # still waiting while the lock is held
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, "".join(seen) + err
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"


def test_a_sigkilled_holder_leaves_no_stale_lock(tmp_path):
    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from bnrepro.identity import RunLock; "
                               f"l = RunLock({str(run_dir)!r}).__enter__(); print('held', flush=True); time.sleep(60)"],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RunLocked):
        RunLock(run_dir).__enter__()
    holder.kill()
    holder.wait()
    with RunLock(run_dir):  # the kernel released the dead holder's lock
        assert (run_dir / LOCK).read_text().startswith(f"pid {os.getpid()} ")


SWEEP = ("-m", "model.norm=bn,none", "seed=0,1", "trainer.max_steps=60", "trainer.eval_every=20",
         "trainer.threads=1", "logger=none")


def test_two_identical_sweeps_at_once_train_every_run_once(tmp_path):
    """Two sweeps into one dir used to train every run twice, interleaved (duplicated, out-of-order rows)."""
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "bnrepro.train", *SWEEP, f"hydra.sweep.dir={tmp_path / 'both'}"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    clean = run_cli(*SWEEP, f"hydra.sweep.dir={tmp_path / 'clean'}")
    assert clean.returncode == 0, clean.stderr
    runs = sorted(p.name for p in (tmp_path / "clean").iterdir() if p.is_dir())
    assert len(runs) == 4
    for name in runs:
        assert rows(tmp_path / "both" / name) == rows(tmp_path / "clean" / name), name
    text = "".join(errs)
    assert text.count(": completed score") == 4  # each run trained by one process...
    assert text.count("already completed") == 4  # ...and found finished by the other


# --- failure is a status, even on a full disk ---------------------------------------------------------------
def _no_temp_files(run_dir: Path) -> list[str]:
    return [str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if ".tmp" in p.name]


def test_a_failed_checkpoint_write_is_a_failed_status_naming_the_file(tmp_path, monkeypatch):
    import errno

    import torch

    from bnrepro import checkpoint

    real_save = torch.save

    def full_disk(obj, f, *a, **kw):
        real_save(obj, f, *a, **kw)  # the temp file is written (and takes space), then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    with pytest.raises(OSError, match="cannot write .*checkpoints/last.pt: .*No space left on device"):
        train(compose_cfg(*TINY, "trainer.ckpt_every=10", "trainer.eval_every=20"), run_dir=tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and "checkpoints/last.pt" in summary["error"]
    assert _no_temp_files(tmp_path) == []


@pytest.fixture
def tiny_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a 2 MB tmpfs here ({done.stderr.decode().strip()[:80]}): the monkeypatched "
                    "full-disk test above covers the same path")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_leaves_a_failed_status_and_no_temp_file_then_resumes(tiny_disk, tmp_path):
    """An MLP whose checkpoint (weights and momentum, 1.4 MB) does not fit a 2 MB disk twice (last.pt, best.pt)."""
    args = ("model.hidden=[500,300]", "trainer.max_steps=20", "trainer.eval_every=10", "trainer.ckpt_every=10",
            "trainer.threads=1", "logger=none", "trainer.progress=none")
    run_dir = tiny_disk / "run"
    out = run_cli(*args, f"hydra.run.dir={run_dir}")
    assert out.returncode == 1, out.stderr
    assert f"cannot write {run_dir}/checkpoints/" in out.stderr.strip().splitlines()[-1]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and f"{run_dir}/checkpoints/" in summary["error"]
    assert _no_temp_files(run_dir) == []
    # space freed (the run moved to a big disk): the same command finishes it, as an uninterrupted run would
    moved = tmp_path / "moved"
    shutil.copytree(run_dir, moved)
    again = run_cli(*args, f"hydra.run.dir={moved}")
    assert again.returncode == 0, again.stderr
    reference = run_cli(*args, f"hydra.run.dir={tmp_path / 'reference'}")
    assert reference.returncode == 0 and rows(moved) == rows(tmp_path / "reference")


# --- provenance ---------------------------------------------------------------------------------------------
def test_code_version_sees_uncommitted_changes(tmp_path):
    """A copy of the package in a git repo of its own: clean, then with a one-character edit, then another."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "bnrepro", repo / "bnrepro", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "configs", repo / "configs")
    git = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True)
    git("init", "-q")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "x", "--allow-empty")
    git("add", "bnrepro", "configs")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "code")
    probe = "import json; from bnrepro.loop import code_version; print(json.dumps(code_version()))"
    version = lambda: json.loads(subprocess.run([sys.executable, "-c", probe], cwd=repo, capture_output=True,
                                                text=True, check=True).stdout)
    clean = version()
    assert clean["git_dirty"] is False and clean["code_hash"] is None and clean["git_rev"] != "unknown"
    optim = repo / "bnrepro" / "optim.py"
    optim.write_text(optim.read_text() + "\n# a change\n")
    dirty = version()
    assert dirty["git_dirty"] is True and dirty["code_hash"] and dirty["git_rev"] == clean["git_rev"]
    optim.write_text(optim.read_text() + "# another\n")
    assert version()["code_hash"] != dirty["code_hash"]


def test_a_resume_from_other_code_warns(tmp_path, capsys):
    cfg = compose_cfg(*TINY)
    claim_dir(cfg, tmp_path, code={"git_rev": "abc1234", "git_dirty": False, "code_hash": None})
    claim_dir(cfg, tmp_path, code={"git_rev": "abc1234", "git_dirty": False, "code_hash": None})
    assert "two versions of the code" not in capsys.readouterr().err
    claim_dir(cfg, tmp_path, code={"git_rev": "abc1234", "git_dirty": True, "code_hash": "9f9f"})
    err = capsys.readouterr().err
    assert "started from code abc1234 and resumes from abc1234 with uncommitted changes 9f9f" in err


def test_a_finished_run_met_by_other_code_is_skipped_without_the_resume_warning(tmp_path, capsys):
    """A sweep relaunched after a commit skips its finished runs: they resume nothing, so no warning that their
    numbers come from two versions of the code (one line per run had buried the sweep's real messages)."""
    train(compose_cfg(*TINY), run_dir=tmp_path)
    capsys.readouterr()
    claim_dir(compose_cfg(*TINY), tmp_path, code={"git_rev": "0ther00", "git_dirty": False, "code_hash": None})
    assert "two versions of the code" not in capsys.readouterr().err


def test_summary_records_the_code_version(tmp_path):
    from bnrepro.loop import code_version

    summary = train(compose_cfg(*TINY), run_dir=tmp_path)
    assert {k: summary[k] for k in ("git_rev", "git_dirty", "code_hash")} == code_version()
    assert json.loads((tmp_path / OWN / "identity.json").read_text())["code"] == code_version()


# --- smaller items ---------------------------------------------------------------------------------------------
def test_a_run_with_one_evaluation_says_its_score_averages_one(tmp_path):
    out = run_cli(*TINY, "trainer.eval_every=0", f"hydra.run.dir={tmp_path}")
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "summary.json").read_text())["score_k"] == 1
    assert "(mean test acc over the last 1 eval)" in out.stderr


def test_display_and_lock_options_are_not_part_of_a_runs_identity(tmp_path):
    a = compose_cfg(*TINY)
    b = compose_cfg(*TINY, "trainer.progress_every_s=60", "trainer.wait_for_lock=true")
    assert config_hash(a) == config_hash(b)
    train(a, run_dir=tmp_path)
    assert train(b, run_dir=tmp_path)["status"] == "completed"  # the finished run, not a refusal


def test_a_run_recorded_under_a_hash_that_counted_a_now_ignored_key_is_still_its_own(tmp_path):
    """Hashes made before progress_every_s left the identity differ from today's for the same config."""
    cfg = compose_cfg(*TINY)
    train(cfg, run_dir=tmp_path)
    identity = tmp_path / OWN / "identity.json"
    recorded = json.loads(identity.read_text())
    identity.write_text(json.dumps({**recorded, "config_hash": "0123456789abcdef"}))
    assert train(cfg, run_dir=tmp_path)["status"] == "completed"
    assert identity_config(recorded["config"]) == identity_config(cfg)


def test_sigterm_exits_143_with_an_interrupted_status(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "WANDB_MODE": "disabled"}
    proc = subprocess.Popen([sys.executable, "-m", "bnrepro.train", "trainer.max_steps=20000", "trainer.eval_every=100",
                             "logger=none", f"hydra.run.dir={run_dir}"], cwd=ROOT, env=env, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 120
    while not ((run_dir / "metrics.jsonl").exists() and (run_dir / "metrics.jsonl").read_text().count("\n") >= 2):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM == 143, err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["signal"] == "SIGTERM" and summary["steps"] >= 200
    assert f"interrupted by SIGTERM after step {summary['steps']}: checkpoint saved" in err


def test_an_unreachable_wandb_server_logs_offline_without_counting_the_wait(tmp_path, monkeypatch):
    """WANDB_MODE=online and no server: W&B's init raises after its timeout; the run keeps an offline copy."""
    import wandb

    real_init, modes = wandb.init, []

    def init(*args, mode=None, **kw):
        modes.append(mode)
        if mode == "online":
            time.sleep(1.0)  # the wait for a server that never answers
            raise wandb.errors.CommError("Run initialization has timed out")
        return real_init(*args, mode=mode, **kw)

    monkeypatch.setattr(wandb, "init", init)
    monkeypatch.setenv("WANDB_MODE", "online")
    start = time.perf_counter()
    summary = train(compose_cfg("trainer.max_steps=20", "trainer.eval_every=10", "trainer.progress=none",
                                "logger=wandb"), run_dir=tmp_path)
    elapsed = time.perf_counter() - start
    assert modes == ["online", "offline"] and summary["status"] == "completed"
    assert list((tmp_path / "wandb").glob("offline-run-*"))
    assert summary["wall_s"] < elapsed - 0.9  # the second of waiting is not the run's


def test_a_run_recorded_before_claim_params_is_the_same_run_and_reads_as_today(tmp_path):
    """Issue 20's one migration, recompute on read: runs/cpu's configs have C7's keys at the top level, today's
    under claim_params. Such a run is the same run as today's config (a relaunched sweep skips it) and the report
    reads its config in today's layout; nothing in the run dir is rewritten."""
    cfg = compose_cfg("experiment=c7_small_batch", "scale=cpu", "norm_batch=real_bn_4", *TINY)
    today = OmegaConf.to_container(cfg, resolve=True)
    old = {**{k: v for k, v in today.items() if k != "claim_params"}, **today["claim_params"]}
    assert old["c7_protocol"] == "real" and old["c7_real"]["examples"] > 0 and "claim_params" not in old
    assert upgrade(old) == today
    assert identity_config(old) == identity_config(cfg)
    assert same_config({"config_hash": "a hash of the old layout", "config": old}, cfg)
    run = write_run(tmp_path / "old", old, [], {"status": "completed"})
    config = read_config(run)
    assert config["claim_params.c7_protocol"] == "real" and "c7_protocol" not in config
    assert "claim_params" not in (run / ".hydra" / "config.yaml").read_text()  # the file is left as it was
