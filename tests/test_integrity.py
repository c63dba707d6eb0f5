"""Results that cannot lie (issue 13): bad input refused at the door, a run dir bound to its config, failure as a
status, damaged files survived, a report that never overwrites with less, numbers independent of the launcher."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from bnrepro import ConfigError
from bnrepro.identity import config_hash
from bnrepro.door import checked as validate
from bnrepro.train import train
from conftest import ROOT, compose_cfg

TINY = ("trainer.max_steps=40", "trainer.eval_every=20", "logger=none")
TIMING = ("wall_s", "examples_per_s")
# a directory no process can write, root included (sysfs is mounted read-only); a chmod 555 dir otherwise
READ_ONLY = Path("/sys") if os.geteuid() == 0 else None


def run_cli(*args: str, module: str = "bnrepro.train", cwd=ROOT, timeout=300,
            env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0", **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def rows(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING}
            for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def read_only_dir(tmp_path: Path) -> Path:
    if READ_ONLY is not None:
        return READ_ONLY
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    return d


# --- validation at the door: the README's table of bad inputs, every one ------------------------------------
BAD_INPUTS = [  # (overrides, the start of the one error line) - the README lists the same table
    (["trainer.max_steps=0"], "error: trainer.max_steps=0: input should be greater than or equal to 1"),
    (["trainer.max_steps=-5"], "error: trainer.max_steps=-5: input should be greater than or equal to 1"),
    (["+optim.lrr=0.1"], "error: unknown key optim.lrr: did you mean optim.lr?"),
    (["optim.lrr=0.1"], "error: unknown key optim.lrr: did you mean optim.lr?"),
    (["+foo=1"], "error: unknown key foo: remove it or fix its spelling; valid keys in the top level:"),
    (["model.norm=bn", "model.ghost_batch=7"], "error: model.ghost_batch=7 is read only by norm ghost_bn or brn"),
    (["model.norm=ghost_bn", "model.ghost_batch=7"], "error: model.ghost_batch=7 does not divide trainer.batch_size=60"),
    (["optim.lr=abc"], "error: optim.lr='abc': input should be a valid number"),
    (["model.dropout=1.5"], "error: model.dropout=1.5: input should be less than 1"),
    (["trainer.batch_size=0", "model.norm=none"], "error: trainer.batch_size=0: input should be greater than or equal to 1"),
    (["trainer.batch_size=1"], "error: trainer.batch_size=1 leaves one example per batch for model.norm=bn"),
    (["model=foo"], "error: unknown option model=foo: choose model=<inception|inception_bn|mlp|resnet|resnet_cifar>"),
    (["experiment=c99"], "error: unknown option experiment=c99: choose experiment=<c10_small_lr|"),
    (["model.norm=batchnorm"], "error: model.norm='batchnorm' is not a norm: set model.norm to one of bn, "),
    (["model.norm=gnn"], "error: model.norm='gnn' is not a norm: did you mean gn? set model.norm to one of "),
    (["model.norm=mypkg.norms.FRN"], "error: model.norm='mypkg.norms.FRN' is not a norm: set model.norm to one of"),
    (["optim.lr=[0.1"], "error: malformed override:"),
    (["-m", "model.norm=bn,foo"], "error: model.norm='foo' is not a norm: set model.norm to one of bn"),
    (["model.norm=bn", "-m", "seed=1"], "error: cannot parse the command line (unrecognized arguments:"),
    (["READ_ONLY_RUN_DIR"], "error: cannot write the output dir"),
    # issue 19: values that used to pass the door and fail late (a TypeError or a float overflow after the run
    # dir existed, a "diverged" run, a failed run dir); a third item is the environment
    (["optim.lr=\"0.1\""], "error: optim.lr='0.1': input should be a valid number, not a string: write "
                            "optim.lr=0.1 without quotes"),
    (["trainer.batch_size=\"32\""], "error: trainer.batch_size='32': input should be a valid integer, not a "
                                    "string: write trainer.batch_size=32 without quotes"),
    (["optim.lr=${oc.env:MYLR}"],
     "error: optim.lr='0.05': input should be a valid number, not the string that ${oc.env:MYLR} gives: write "
     "'optim.lr=\"${oc.decode:${oc.env:MYLR}}\"' on the command line", {"MYLR": "0.05"}),
    (["optim.lr=1e308"], "error: optim.lr=1e+308 does not fit float32 (|x| <= 3.4028234663852886e+38)"),
    (["optim.lr=inf"], "error: optim.lr=inf: set a finite number"),
    (["model.norm=brn", "model.brn_hold=10", "model.brn_rmax_at=40", "model.brn_dmax_at=5"],
     "error: model.brn_dmax_at=5 is before the end of model.brn_hold=10"),
    (["data=mnist", "data.root=/nonexistent"],
     "error: MNIST not found under /nonexistent/MNIST/raw (expects the uncompressed IDX files"),
    (["data=cifar10", "data.root=/nonexistent"],
     "error: cifar10 not found: /nonexistent/cifar-10-batches-py lacks data_batch_1"),
]


def test_every_bad_input_is_one_error_line_exit_2_and_no_run_dir(tmp_path):
    def attempt(i_case):
        i, (overrides, expected, *env) = i_case
        run_dir = tmp_path / f"run{i}"
        if overrides == ["READ_ONLY_RUN_DIR"]:
            overrides, run_dir = [], read_only_dir(tmp_path) / "bnrepro-run"
        where = f"hydra.sweep.dir={run_dir}" if "-m" in overrides else f"hydra.run.dir={run_dir}"
        return overrides, expected, run_dir, run_cli(*(overrides[:1] if overrides[:1] == ['-m'] else []), *TINY,
                                                        *overrides[overrides[:1] == ['-m']:], where, cwd=tmp_path,
                                                        env=env[0] if env else None)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(attempt, enumerate(BAD_INPUTS)))
    for overrides, expected, run_dir, res in results:
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2, (overrides, res.stderr)
        assert len(lines) == 1 and lines[0].startswith(expected), (overrides, res.stderr)
        assert "Traceback" not in res.stderr + res.stdout
        assert not run_dir.exists(), overrides
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()


def test_sweep_values_from_an_experiment_file_are_checked_in_the_job_and_leave_no_dir(tmp_path):
    """A bad value that only the job sees (an experiment file's sweep): that job is refused and its stub dir
    removed; the other job runs; the sweep exits non-zero."""
    (tmp_path / "extra" / "experiment").mkdir(parents=True)
    (tmp_path / "extra" / "experiment" / "bad.yaml").write_text(
        "# @package _global_\nname: bad\nhydra:\n  sweeper:\n    params:\n      model.dropout: 0.0,1.5\n")
    res = run_cli("-m", "experiment=bad", f"hydra.searchpath=[file://{tmp_path / 'extra'}]", *TINY,
                  f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert res.returncode != 0
    assert "error: model.dropout=1.5: input should be less than 1" in res.stderr
    dirs = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert len(dirs) == 1 and dirs[0].startswith("model.dropout=0.0")
    assert json.loads((tmp_path / "sweep" / dirs[0] / "summary.json").read_text())["status"] == "completed"


def test_schema_accepts_every_experiment_and_the_keys_of_the_other_branches():
    for exp in [None, *sorted(p.stem for p in (ROOT / "configs" / "experiment").glob("*.yaml"))]:
        validate(compose_cfg(*([f"experiment={exp}"] if exp else [])))
    validate(compose_cfg("++data.val_split=0.1", "++data.split_seed=3", "++trainer.eval_at=[1,2,4]",
                         "++trainer.score_last_k=3", "++model.init=xavier", "++claim=C8", "++claim_params.c8_setting=ema_stress",
                         "trainer.final_eval=[ema,precise,precise_alg2,batch]"))
    with pytest.raises(ConfigError, match="trainer.score_last_k=0"):
        validate(compose_cfg("++trainer.score_last_k=0"))


def test_schema_accepts_every_job_of_every_experiment_at_every_scale():
    """The suite's own sweeps (hydra.sweeper.params of each experiment file) never hit the door; each job composed
    as the suite's launcher composes it (hydra_plugins/bnrepro_launcher.py)."""
    import itertools

    from hydra_plugins.bnrepro_launcher import sweep_configs

    from bnrepro.door import cfg_without_hydra

    for scale in ("cpu", "cifar", "imagenet"):
        for exp in sorted(p.stem for p in (ROOT / "configs" / "experiment").glob("*.yaml")):
            base = [f"experiment={exp}", f"scale={scale}"]
            master, compose_once = sweep_configs(ROOT / "configs", base)
            params = master.hydra.sweeper.params or {}
            keys = [k for k in params if k != "seed"]
            for values in itertools.product(*(str(params[k]).split(",") for k in keys)):
                validate(cfg_without_hydra(compose_once.take(master, [*base, *(f"{k}={v}" for k, v in
                                                                            zip(keys, values))])))


# --- a run's identity is its config ----------------------------------------------------------------------
def test_hash_ignores_keys_that_do_not_change_numbers():
    base = config_hash(compose_cfg(*TINY))
    assert config_hash(compose_cfg(*TINY, "logger=wandb", "trainer.device=cpu", "trainer.ckpt_every=7",
                                   "trainer.progress=bar", "data.root=/x")) == base
    assert config_hash(compose_cfg(*TINY, "optim.lr=0.5")) != base
    assert config_hash(compose_cfg(*TINY, "trainer.threads=2")) != base  # the numbers depend on it


def test_stale_result_under_a_new_config_is_refused_and_overwrite_moves_it_aside(tmp_path):
    """Issue 13 item 1: the second launch used to print 'already completed, skipped' and rewrite .hydra/."""
    run_dir = tmp_path / "run"
    first = run_cli(*TINY, f"hydra.run.dir={run_dir}")
    assert first.returncode == 0, first.stderr
    config = (run_dir / ".hydra" / "config.yaml").read_text()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["config_hash"] == config_hash(compose_cfg(*TINY))
    again = run_cli(*TINY, "optim.lr=0.5", f"hydra.run.dir={run_dir}")
    lines = again.stderr.strip().splitlines()
    assert again.returncode == 2 and len(lines) == 1, again.stderr
    assert "optim.lr: 0.1 there, 0.5 now" in lines[0] and "trainer.overwrite=true" in lines[0]
    assert (run_dir / ".hydra" / "config.yaml").read_text() == config  # Hydra's rewrite undone
    same = run_cli(*TINY, "trainer.ckpt_every=5", f"hydra.run.dir={run_dir}")  # same identity: skipped
    assert same.returncode == 0 and "already completed" in same.stderr
    assert (run_dir / ".hydra" / "config.yaml").read_text() == config
    moved = run_cli(*TINY, "optim.lr=0.5", "trainer.overwrite=true", f"hydra.run.dir={run_dir}")
    assert moved.returncode == 0, moved.stderr
    aside = list((tmp_path / ".aside").iterdir())
    assert len(aside) == 1 and json.loads((aside[0] / "summary.json").read_text()) == summary
    assert (aside[0] / ".hydra" / "config.yaml").read_text() == config  # the old run keeps its own config
    assert "lr: 0.5" in (run_dir / ".hydra" / "config.yaml").read_text()
    assert json.loads((run_dir / "summary.json").read_text())["config_hash"] != summary["config_hash"]


def test_direct_call_with_another_config_is_refused(tmp_path):
    train(compose_cfg(*TINY), run_dir=tmp_path)
    with pytest.raises(ConfigError, match="model.norm: 'bn' there, 'none' now"):
        train(compose_cfg(*TINY, "model.norm=none"), run_dir=tmp_path)


# --- failure is a status ----------------------------------------------------------------------------------
def test_a_failed_job_is_recorded_and_fails_the_sweep_after_the_others(tmp_path):
    """Issue 13 item 2: a sweep whose jobs fail used to exit 0. Here the mnist job's files exist (so the door,
    which checks only that, lets it in; a missing one is refused there, issue 19) but cannot be read."""
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (raw / name).write_text("not an IDX file")
    sweep = tmp_path / "sweep"
    res = run_cli("-m", "data=digits,mnist", f"data.root={tmp_path / 'data'}", *TINY, f"hydra.sweep.dir={sweep}")
    assert res.returncode != 0
    summaries = {p.parent.name.split(",data=")[1].split(",")[0]: json.loads(p.read_text())
                 for p in sweep.rglob("summary.json")}
    assert summaries["digits"]["status"] == "completed"
    failed = summaries["mnist"]
    assert failed["status"] == "failed" and failed["error"] and "\n" not in failed["error"]
    assert failed["config_hash"]
    assert sum(line.startswith("error: ") for line in res.stderr.splitlines()) >= 1


def _fake_python(tmp_path: Path) -> Path:
    """A stand-in for python: the suite (bnrepro.suite) fails, the report prints that it ran."""
    script = tmp_path / "python"
    script.write_text("""#!/usr/bin/env bash
if [ "$2" = bnrepro.suite ]; then echo "error: boom" >&2; exit 1; fi
echo "ran $*"
""")
    script.chmod(0o755)
    return script


@pytest.mark.parametrize("keep_going", [False, True])
def test_the_suite_stops_on_a_failed_experiment_or_keeps_going(tmp_path, capsys, monkeypatch, keep_going):
    from bnrepro import suite

    ran = []
    monkeypatch.setattr(suite, "sweep", lambda argv: ran.append(argv[0]) or (1 if argv[0] == "experiment=c2_lr" else 0))
    code = suite.main(["fig1", "c2_lr", "c3_sigmoid", "--runs", str(tmp_path), *(["--keep-going"] * keep_going),
                       "--", "seed=2000"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "[1/3] fig1: " in out and "[2/3] c2_lr: " not in out  # a finished experiment's line
    assert "[2/3] c2_lr FAILED (exit 1)" in err
    if keep_going:
        assert ran == ["experiment=fig1", "experiment=c2_lr", "experiment=c3_sigmoid"] and "[3/3] c3_sigmoid: " in out
        assert "1 experiment(s) FAILED: c2_lr" in err
    else:
        assert ran == ["experiment=fig1", "experiment=c2_lr"] and "c3_sigmoid" not in out


def test_streams_split_each_experiment_by_its_seed_axis(tmp_path):
    """--streams: a task per experiment and seed of its sweep's own seed axis (C7's fresh seeds, the pilot's, a
    command line's), each running its jobs one at a time; without streams a task per experiment."""
    import argparse

    from bnrepro import suite

    args = argparse.Namespace(scale="cpu", launcher="joblib", runs=tmp_path, streams=2)
    got = suite.tasks(["c5_dropout", "c7_small_batch"], args, [])
    assert [label for _, label, _ in got] == [f"c5_dropout seed={s}" for s in range(2000, 2005)] + [
        f"c7_small_batch seed={s}" for s in range(2005, 2010)]
    assert all(argv[-2:] == [argv[-2], "hydra.launcher.n_jobs=1"] and argv[-2].startswith("seed=") for _, _, argv in got)
    assert [label for _, label, _ in suite.tasks(["c5_dropout"], args, ["seeds=${pilot_seeds}"])] == [
        f"c5_dropout seed={s}" for s in range(1000, 1005)]
    assert [label for _, label, _ in suite.tasks(["c5_dropout"], args, ["seed=3,4"])] == [
        "c5_dropout seed=3", "c5_dropout seed=4"]
    args.streams = 1
    assert [label for _, label, _ in suite.tasks(["c5_dropout", "c7_small_batch"], args, [])] == [
        "c5_dropout", "c7_small_batch"]


def test_streams_run_the_same_runs_with_the_same_numbers(tmp_path):
    """Two streams (two processes, a task per seed) make the same run dirs, configs and numbers as the one-process
    suite: only the order of the jobs changes."""
    one = ["model.dropout=0.0", "data=digits", "seed=2000,2001", "trainer.max_steps=3", "trainer.eval_every=3"]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    for name, streams in (("one", "1"), ("two", "2")):
        done = subprocess.run([sys.executable, "-m", "bnrepro.suite", "c5_dropout", "--runs", str(tmp_path / name),
                               "--streams", streams, "--", *one], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    assert "[2/2] c5_dropout seed=" in done.stdout
    runs = {name: {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / name).rglob("summary.json")}
            for name in ("one", "two")}
    assert len(runs["one"]) == 4 and runs["one"].keys() == runs["two"].keys()
    for job, summary in runs["one"].items():
        other = runs["two"][job]
        assert (summary["config_hash"], summary["final_acc"]) == (other["config_hash"], other["final_acc"])


@pytest.mark.parametrize("keep_going", ["0", "1"])
def test_reproduce_reports_after_a_failed_suite_only_when_keeping_going(tmp_path, keep_going):
    env = {**os.environ, "PYTHON": str(_fake_python(tmp_path)), "EXPERIMENTS": "fig1 c2_lr c3_sigmoid",
           "KEEP_GOING": keep_going, "RUNS": str(tmp_path / "runs"), "OUT": str(tmp_path / "out")}
    res = subprocess.run(["bash", str(ROOT / "scripts" / "reproduce.sh")], env=env, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 1 and "error: boom" in res.stderr
    assert ("bnrepro.report" in res.stdout) == (keep_going == "1")


# --- damaged files ----------------------------------------------------------------------------------------
def test_torn_metrics_line_and_unreadable_checkpoint_resume(tmp_path):
    """Issue 13 item 5: a torn last line and a truncated last.pt used to leave the run stuck."""
    reference = tmp_path / "reference"
    train(compose_cfg(*TINY, "trainer.max_steps=60", "trainer.ckpt_every=20"), run_dir=reference)
    run_dir = tmp_path / "run"
    cfg = compose_cfg(*TINY, "trainer.max_steps=60", "trainer.ckpt_every=20")
    train(cfg, run_dir=run_dir)
    # simulate a kill at step ~50: summary gone, last.pt (step 60) torn, a torn row after the step-40 row
    (run_dir / "summary.json").unlink()
    ckpt = run_dir / "checkpoints"
    assert torch.load(ckpt / "previous.pt", weights_only=False)["state"]["step"] == 40
    (ckpt / "last.pt").write_bytes((ckpt / "last.pt").read_bytes()[:1000])
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n" + lines[-1][:17])
    res = run_cli(*TINY, "trainer.max_steps=60", "trainer.ckpt_every=20", f"hydra.run.dir={run_dir}")
    assert res.returncode == 0, res.stderr
    assert f"checkpoint {ckpt / 'last.pt'} is unreadable" in res.stderr and "resumed at step 40" in res.stderr
    assert rows(run_dir) == rows(reference)
    # nothing readable at all: a warning naming the folder, and a fresh start to the same numbers
    (run_dir / "summary.json").unlink()
    for name in ("last.pt", "previous.pt"):
        (ckpt / name).write_bytes(b"garbage")
    res = run_cli(*TINY, "trainer.max_steps=60", "trainer.ckpt_every=20", f"hydra.run.dir={run_dir}")
    assert res.returncode == 0 and f"no readable checkpoint in {ckpt}" in res.stderr
    assert rows(run_dir) == rows(reference)


# --- the report never overwrites with less ----------------------------------------------------------------
def _report(runs, out, *extra):
    return run_cli(str(runs), "--out", str(out), *extra, module="bnrepro.report")


def _two_runs(root: Path, steps: int = 40) -> None:
    for seed in (0, 1):
        train(compose_cfg("experiment=c2_lr", "model.norm=bn", "optim.lr_mult=1", f"seed={seed}",
                          f"trainer.max_steps={steps}", "trainer.eval_every=20", "logger=none"),
              run_dir=root / f"seed={seed}")


def test_report_guards(tmp_path):
    """Issue 13 item 3: a mistyped RUNS used to rewrite the committed report with every claim 'not run'."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "REPORT.md").write_text("committed")
    (out / ".bnrepro-report").write_text('{"written_by": "bnrepro.report"}')  # a report folder: --out may replace it
    res = _report(tmp_path / "runs-typo", out)
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [
        f"error: no run directories (with a summary.json) under {tmp_path / 'runs-typo'}: pass the dir the sweeps "
        "wrote (RUNS=runs/<scale>); nothing was written"]
    assert (out / "REPORT.md").read_text() == "committed"
    runs = tmp_path / "runs"
    _two_runs(runs / "c2_lr")
    res = _report(runs, read_only_dir(tmp_path) / "bnrepro-report")
    assert res.returncode == 2 and "error: cannot write the report to" in res.stderr and "Traceback" not in res.stderr
    (out / "stale.png").write_text("from an older report")
    assert _report(runs, out).returncode == 0
    assert not (out / "stale.png").exists() and not list(tmp_path.glob(".out.*"))  # swapped in whole
    header = (out / "REPORT.md").read_text().split("## Claims")[0]
    assert "Runs made on: " in header and torch.__version__ in header
    budget = compose_cfg("experiment=c2_lr").trainer.max_steps  # what configs/claims/c2_lr/cpu.yaml defines
    assert f"not the scale's step budget.** `c2_lr` has runs of 40 steps; its scale defines {budget}" in header
    first = (out / "claims.json").read_bytes()
    assert _report(runs, out).returncode == 0
    assert (out / "claims.json").read_bytes() == first  # same runs, same bytes
    assert str(tmp_path) not in first.decode()  # no absolute paths
    (runs / "c2_lr" / "seed=1" / "summary.json").rename(runs / "c2_lr" / "seed=1" / "summary.moved")
    res = _report(runs, out)
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [
        f"error: the report in {out} has 2 runs over 1 claim at scale cpu, 2 of them off the scale's step budget; "
        "this one has 1 run over 1 claim at scale cpu, 1 of them off the scale's step budget: pass --force to replace "
        "it, or choose another --out"]
    assert _report(runs, out, "--force").returncode == 0
    assert "fewer runs than the report this one replaced** (1 vs 2)" in (out / "REPORT.md").read_text()


def test_report_left_intact_when_writing_fails(tmp_path, monkeypatch):
    from bnrepro.report import __main__ as report_main
    from bnrepro.report import writer

    runs, out = tmp_path / "runs", tmp_path / "out"
    _two_runs(runs / "c2_lr")
    out.mkdir()
    (out / "REPORT.md").write_text("committed")
    (out / ".bnrepro-report").write_text('{"written_by": "bnrepro.report"}')
    monkeypatch.setattr(writer, "markdown", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("disk full")))
    with pytest.raises(RuntimeError):
        report_main.main([str(runs), "--out", str(out)])
    assert (out / "REPORT.md").read_text() == "committed"
    assert sorted(p.name for p in out.iterdir()) == [".bnrepro-report", "REPORT.md"]
    assert not list(tmp_path.glob(".out.*"))


# --- numbers are a function of config and seed --------------------------------------------------------------
def test_sweep_point_rerun_alone_equals_the_joblib_sweep_bit_for_bit(tmp_path):
    """Issue 13 item 7: run alone a point got 2 torch threads and other numbers than inside the joblib sweep."""
    point = ["experiment=c2_lr", "optim.lr_mult=30", "seed=0", "trainer.max_steps=60", "trainer.eval_every=20",
             "logger=none"]
    sweep = run_cli("-m", *point[:1], "model.norm=bn,none", *point[1:], "hydra/launcher=joblib",
                    "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert sweep.returncode == 0, sweep.stderr
    alone = run_cli(*point, "model.norm=bn", f"hydra.run.dir={tmp_path / 'alone'}")
    assert alone.returncode == 0, alone.stderr
    swept = next((tmp_path / "sweep").glob("*model.norm=bn*"))
    assert rows(swept) == rows(tmp_path / "alone")
    a, b = (json.loads((d / "summary.json").read_text()) for d in (swept, tmp_path / "alone"))
    assert a["threads"] == b["threads"] == 1 and a["config_hash"] == b["config_hash"]
    assert {"cpu", "isa", "torch", "mkl", "onednn"} <= set(a["machine"])


# --- chaos: SIGKILL at random points, then resume ------------------------------------------------------------
CHAOS = ["-m", "model.norm=bn,none", "seed=0,1,2", "trainer.max_steps=60", "trainer.eval_every=10",
         "trainer.ckpt_every=7", "trainer.threads=1", "logger=none"]


def _sweep_rows(sweep_dir: Path) -> dict[str, list[dict]]:
    return {p.parent.name: rows(p.parent) for p in sweep_dir.rglob("metrics.jsonl") if ".aside" not in p.parts}


def test_chaos_sigkill_three_times_then_resume_equals_an_uninterrupted_sweep(tmp_path):
    """A 6-job sweep killed with SIGKILL (no handler runs) at random points three times, then rerun: every run
    ends completed, with the metrics of an uninterrupted sweep and no duplicate rows."""
    import random
    import signal
    import time

    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    cmd = lambda d: [sys.executable, "-m", "bnrepro.train", *CHAOS, f"hydra.sweep.dir={d}"]
    reference = run_cli(*CHAOS, f"hydra.sweep.dir={tmp_path / 'reference'}")
    assert reference.returncode == 0, reference.stderr
    rng = random.Random(13)
    logged = lambda: sum(len(p.read_text().splitlines()) for p in (tmp_path / "chaos").rglob("metrics.jsonl"))
    # kill points in training progress (metrics rows written, of 36), so they land mid-sweep on a fast or slow
    # machine; plus a random fraction of a second, so some land mid-step or mid-write
    targets = sorted(rng.sample(range(2, 31), 3))
    for target in targets:
        proc = subprocess.Popen(cmd(tmp_path / "chaos"), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 120
        while proc.poll() is None and logged() < target and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0, 0.15))
        assert proc.poll() is None, "the sweep finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    final = run_cli(*CHAOS, f"hydra.sweep.dir={tmp_path / 'chaos'}")
    assert final.returncode == 0, final.stderr
    expected, got = _sweep_rows(tmp_path / "reference"), _sweep_rows(tmp_path / "chaos")
    assert len(expected) == 6 and got == expected
    for name, run_rows in got.items():
        steps = [r["step"] for r in run_rows]
        assert steps == sorted(set(steps)), name  # no duplicate rows
        assert json.loads((tmp_path / "chaos" / name / "summary.json").read_text())["status"] == "completed"


def test_step_budget_check_follows_each_arm(tmp_path):
    """C10 scales its budget with 1/LR: a run at x0.01 is compared with what its own arm defines, not x1's."""
    from bnrepro.report.__main__ import arm_overrides, expected_steps
    from bnrepro.report.runs import Run

    hydra = tmp_path / ".hydra"
    hydra.mkdir()
    (hydra / "overrides.yaml").write_text("- model.norm=none\n- optim.lr_mult=0.01\n- seed=0\n"
                                          "- experiment=c10_small_lr\n- scale=cpu\n")
    run = Run(dir=tmp_path, config={"name": "c10_small_lr"}, summary={})
    arm = arm_overrides(run)
    assert arm == ("model.norm=none", "optim.lr_mult=0.01")
    small = compose_cfg("experiment=c10_small_lr", *arm).trainer.max_steps
    assert expected_steps("c10_small_lr", "cpu", arm) == small > expected_steps("c10_small_lr", "cpu")
