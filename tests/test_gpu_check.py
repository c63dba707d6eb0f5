"""scripts/gpu_check.py on the CPU: the sweep expansion and run count, the GPU-hours estimate, the markdown
writer, and the no-CUDA path end to end (it says so in one line and exits 0)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bnrepro import rundir

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import gpu_check as gc  # noqa: E402


def test_expand_sweep_is_hydras_cartesian_product():
    jobs = gc.expand_sweep({"model.norm": "bn,none", "optim.lr_mult": "1,5,30", "seed": "range(0,3)",
                            "trainer.batch_size": 64})
    assert len(jobs) == 2 * 3 * 3
    assert jobs[0] == ["model.norm=bn", "optim.lr_mult=1", "seed=0", "trainer.batch_size=64"]
    assert ["model.norm=none", "optim.lr_mult=30", "seed=2", "trainer.batch_size=64"] in jobs
    assert gc.expand_sweep({}) == [[]]


def test_suite_jobs_compose_each_run_of_the_cifar_scale():
    jobs = gc.suite_jobs("cifar", ["c2_lr", "c6_init"])
    # c2: norm x lr_mult x seeds; c6: its cifar file sweeps model.init_scale instead of the MLP's init_std
    seeds = {j["seed"] for j in jobs["c2_lr"]}
    assert len(jobs["c2_lr"]) == 2 * 3 * len(seeds) and 0 in seeds
    assert all(j["model"] == "resnet_cifar" and j["max_steps"] == 64000 and j["batch_size"] == 128
               for j in jobs["c2_lr"])
    assert any("model.init_scale=10.0" in j["overrides"] for j in jobs["c6_init"])


def test_estimate_extrapolates_measured_runs_and_falls_back():
    job = lambda norm, seed, steps=1000: {"overrides": [f"model.norm={norm}", f"seed={seed}"], "seed": seed,
                                          "model": "resnet_cifar", "max_steps": steps, "batch_size": 100,
                                          "eval_every": 500, "eval_examples": 300}
    count = [{"experiment": "c2_lr", "jobs": [job("bn", 0), job("bn", 1), job("none", 0)]},
             {"experiment": "c5_dropout", "jobs": [job("bn", 0), job("none", 0)]}]
    # one measured run: 10 ms/step, 40 steps in 1.4 s -> 1.0 s fixed per run; the experiment's process: +2 s
    suite = [{"kind": "suite", "experiment": "c2_lr", "status": "completed", "wall_s": 3.4,
              "runs": [{"overrides": ["model.norm=bn"], "status": "completed", "steps": 40, "wall_s": 1.4,
                        "step_s": 0.01}]}]
    # c5: the no-BN run diverged at its first evaluation (no steady interval): it takes the BN run's rates
    suite.append({"kind": "suite", "experiment": "c5_dropout", "status": "completed", "wall_s": 2.8, "runs": [
        {"overrides": ["model.norm=bn"], "status": "completed", "steps": 40, "wall_s": 1.4, "step_s": 0.01,
         "steady": True},
        {"overrides": ["model.norm=none"], "status": "diverged", "steps": 20, "wall_s": 1.0, "step_s": 0.05,
         "steady": False}]})
    ratio = [{"kind": "ratio", "trainer_img_s": 5000.0}]  # fallback: 100 / 5000 = 20 ms/step, no fixed cost
    parallel = [{"k": 1, "img_s": 1000.0}, {"k": 4, "img_s": 2500.0}]
    est = gc.estimate(count, suite, ratio, parallel)
    evals = 2 * 300 / 100 / 3  # two evaluations of 300 images, a third of a step per 100 images
    measured = 1.0 + 1000 * 0.01 + evals * 0.01
    fallback = 1000 * 0.02 + evals * 0.02
    assert est["runs"] == 5 and est["fallbacks"] == 1 and est["missing"] == 0
    assert est["per_experiment_h"]["c2_lr"] == pytest.approx((2.0 + 2 * measured + fallback) / 3600)
    assert est["per_experiment_h"]["c5_dropout"] == pytest.approx((0.4 + 2 * measured) / 3600)
    assert est["gpu_hours"] == pytest.approx(sum(est["per_experiment_h"].values()))
    assert est["best_k"] == 4 and est["gpu_hours_parallel"] == pytest.approx(est["gpu_hours"] / 2.5)


def test_render_writes_every_section_with_the_device_named():
    info = {"device": "NVIDIA H100 80GB HBM3", "torch": "2.11.0", "cuda": "13.0", "cudnn": 91000, "python": "3.12.3",
            "cpus": 16, "date": "2026-11-26 00:00 UTC", "budget": 330, "cl_avg_pool": "**wrong**, as in #188344"}
    results = {
        "status": {"tests": {"status": "ok", "seconds": 50.0}, "throughput": {"status": "cut", "seconds": 85.0}},
        "tests": "tests/test_cuda.py::test_gpu_crop_flip_equals_cpu PASSED\n1 passed",
        "throughput": [
            {"kind": "throughput", "model": "resnet50", "batch": 128, "shape": [3, 224, 224], "variant": "fp32",
             "img_s": 1000.0},
            {"kind": "throughput", "model": "resnet50", "batch": 128, "shape": [3, 224, 224], "variant": "cl-bf16",
             "img_s": 3000.0},
            {"kind": "ratio", "model": "resnet20", "batch": 128, "round": 0, "trainer_img_s": 9000.0,
             "bare_img_s": 10000.0, "ratio": 1.111},
            {"kind": "error", "case": "resnet50 compiled", "error": "RuntimeError: boom"}],
        "suite": [{"kind": "suite", "experiment": "c2_lr", "status": "completed", "wall_s": 12.0,
                   "runs": [{"overrides": [], "status": "completed", "steps": 40, "wall_s": 1.0, "step_s": 0.004}]}],
        "parallel": [{"k": 1, "img_s": 20000.0, "per_run_img_s": 20000.0}, {"k": 2, "status": "not run (budget)"}],
        "estimate": {"runs": 18, "gpu_hours": 2.5, "gpu_hours_parallel": 1.0, "best_k": 4, "parallel_gain": 2.5,
                     "fallbacks": 0, "missing": 0, "per_experiment_h": {"c2_lr": 2.5}},
    }
    md = gc.render(info, results)
    for text in ("NVIDIA H100 80GB HBM3", "| resnet50 | 128 | 3x224x224 | 1,000 | 3,000 | - | 3.00x | - |",
                 "**1.11x**", "failed: resnet50 compiled", "NVIDIA DeepLearningExamples", "3,000 img/s (resnet50",
                 "| c2_lr | 1 | completed | 12.0 | 4.0 | 4.0 |", "| 1 | 20,000 | 20,000 | 1.00x |",
                 "| 2 | not run (budget) |", "**2.5 GPU-hours** for 18 runs", "| suite | pending | 0 |",
                 "test_gpu_crop_flip_equals_cpu PASSED",
                 "channels_last backward of a padded average pool on this device: **wrong**, as in #188344."):
        assert text in md, text
    assert gc.render(info, {}).count("not run") >= 2  # nothing measured yet: still a complete page


def test_no_cuda_path_says_so_and_exits_0(tmp_path):
    out = tmp_path / "gpu.md"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--experiments", "c4_drift",
                           "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("gpu-check: no CUDA device")
    assert "SCALE=cifar configures" in done.stdout and "CPU sample resnet20" in done.stdout
    md = out.read_text()
    assert "| resnet20 | 8 | 3x32x32 |" in md and "| count | ok |" in md


def test_capped_reports_ok_failed_and_cut_and_kills_the_whole_group(tmp_path):
    """The one runner of every part: a part past its cap is killed with its children (a grandchild that would
    write a file after the cap never does), a failing one reports its exit code."""
    assert gc.capped([sys.executable, "-c", "pass"], 30)["status"] == "ok"
    assert gc.capped([sys.executable, "-c", "raise SystemExit(3)"], 30)["status"] == "failed (exit 3)"
    late = tmp_path / "late"
    child = f"import time, pathlib; time.sleep(3); pathlib.Path({str(late)!r}).write_text('x')"
    parent = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {child!r}]); time.sleep(60)"
    cut = gc.capped([sys.executable, "-c", parent], 1)
    assert cut["status"].startswith("cut at its 1 s cap") and cut["seconds"] < 10
    import time
    time.sleep(4)
    assert not late.exists() and not gc.CHILDREN


def write_run(root, overrides: list[str], summary: dict, metrics: list[dict] = ()):
    return rundir.write_run(root, {}, list(metrics), summary, overrides) / rundir.SUMMARY


def test_suite_rows_of_completed_and_failed_runs(tmp_path):
    """A failed run's summary has no wall time or steps (train.py writes status, error): part (c) records it with
    its error and no rate, the page lists it, and the estimate falls back for it instead of crashing (it did, on
    an H200, at C7's failed ghost-BN runs)."""
    done = gc.suite_run_row(write_run(tmp_path / "a", ["norm_batch=bn_32", "seed=0"], {
        "status": "completed", "steps": 40, "wall_s": 3.0}, [
        {"step": 20, "wall_s": 1.0, "train_loss": 2.0}, {"step": 40, "wall_s": 1.5, "train_loss": 1.9}]))
    assert done["steady"] and done["step_s"] == pytest.approx(0.025) and done["overrides"] == ["norm_batch=bn_32"]
    failed = gc.suite_run_row(write_run(tmp_path / "b", ["norm_batch=bn_2", "seed=0"], {
        "status": "failed", "error": "RuntimeError: mixed dtype"}))
    assert failed["step_s"] is None and failed["error"] == "RuntimeError: mixed dtype"
    suite = [{"kind": "suite", "experiment": "c7_small_batch", "status": "exit 1: error: a job of this sweep failed",
              "wall_s": 9.0, "runs": [done, failed]}]
    job = lambda nb: {"overrides": [f"norm_batch={nb}", "seed=0"], "seed": 0, "model": "resnet_cifar",
                      "max_steps": 100, "batch_size": 128, "eval_every": 50, "eval_examples": 0}
    est = gc.estimate([{"experiment": "c7_small_batch", "jobs": [job("bn_32"), job("bn_2")]}], suite,
                      [], [])
    # the failed run takes its experiment's median steady run's rates, as a diverged one does
    assert est["fallbacks"] == 0 and est["missing"] == 0
    assert est["gpu_hours"] * 3600 == pytest.approx(2 * ((3.0 - 40 * 0.025) + 100 * 0.025))
    md = gc.render({}, {"suite": suite})
    assert "| c7_small_batch | 2 | exit 1: error: a job of this sweep failed | 9.0 | 25.0 | 25.0 |" in md
    assert "- c7_small_batch `norm_batch=bn_2`: failed: `RuntimeError: mixed dtype`" in md


def test_last_error_is_the_trainers_error_line():
    assert gc.last_error("Traceback\n  x\nerror: model.ghost_batch=3 ...\n\nSet HYDRA_FULL_ERROR=1\n") == \
        "error: model.ghost_batch=3 ..."
    assert gc.last_error("a\nModuleNotFoundError: No module named 'pydantic'\n") == \
        "ModuleNotFoundError: No module named 'pydantic'"
    assert gc.last_error("") == ""


def test_render_merges_kept_runs_part_by_part(tmp_path):
    """--render: each part from the last kept run that ran it, the run named per part, the estimate recomputed
    from the merged parts, the last folder's notes.md at the end."""
    count = [{"kind": "count", "experiment": "c2_lr", "jobs": [
        {"overrides": ["model.norm=bn", "seed=0"], "seed": 0, "model": "resnet_cifar", "max_steps": 100,
         "batch_size": 100, "eval_every": 100, "eval_examples": 0}]}]
    first = {"info": {"device": "NVIDIA H200", "date": "d1", "budget": 530}, "results": {
        "status": {"tests": {"status": "failed (exit 2)", "seconds": 9}, "throughput": {"status": "ok", "seconds": 80},
                   "suite": {"status": "ok", "seconds": 8}, "parallel": {"status": "not run (budget)", "seconds": 0}},
        "tests": "ModuleNotFoundError", "suite": [], "throughput": [
            {"kind": "ratio", "model": "resnet20", "batch": 100, "round": 0, "trainer_img_s": 10000.0,
             "bare_img_s": 10000.0, "ratio": 1.0}]}}
    second = {"info": {"device": "NVIDIA H200", "date": "d2", "how": "tests and suite on their own"}, "results": {
        "status": {"tests": {"status": "ok", "seconds": 130}, "count": {"status": "ok", "seconds": 0}},
        "tests": "15 passed", "count": count}}
    for name, kept in (("one", first), ("two", second)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(kept))
    (tmp_path / "two" / "notes.md").write_text("## What these runs found\nall of it")
    out = tmp_path / "gpu.md"
    assert gc.main(["--render", str(tmp_path / "one"), str(tmp_path / "two"), "--out", str(out)]) == 0
    md = out.read_text()
    for text in ("Parts from 2 runs", "run 1 written d1 (budget 530 s); run 2 written d2 (tests and suite on their "
                 "own)", "| tests | ok | 130 | 2 |", "| throughput | ok | 80 | 1 |", "| parallel | pending | 0 | - |",
                 "15 passed", "**0.0 GPU-hours** for 1 runs", "1 jobs used the trainer's ResNet-20 rate"):
        assert text in md, text
    assert "ModuleNotFoundError" not in md and md.rstrip().endswith("all of it")


def test_a_missing_dependency_stops_the_check_before_any_part(tmp_path, monkeypatch, capsys):
    """On a GPU image that lacks one of our pure-Python dependencies every part would fail on its first import and
    the lent minutes would be gone (pydantic, on an H200): one line that names it, exit 2, nothing written."""
    monkeypatch.setattr(gc, "NEEDED", gc.NEEDED + ("no_such_module_xyz",))
    out = tmp_path / "gpu.md"
    assert gc.main(["--out", str(out), "--keep", str(tmp_path / "kept")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lacks no_such_module_xyz" in err and "carry their wheels" in err
    assert not out.exists() and not (tmp_path / "kept").exists()
    monkeypatch.setattr(gc, "NEEDED", ())
    assert gc.missing_modules() == []  # this environment has everything bnrepro.train imports


def test_the_page_shows_each_tests_outcome_not_a_thread_dump():
    log = "\n".join(["platform linux", "tests/test_cuda.py::test_a PASSED [ 50%]", "tests/test_cuda.py::test_b FAILED",
                     "E           Failed: Timeout (>75.0s) from pytest-timeout."] + ["DEBUG torch.__trace"] * 2000 +
                    ["FAILED tests/test_cuda.py::test_b", "==== 1 failed, 1 passed in 135.54s ===="])
    got = gc.test_outcomes(log).splitlines()
    assert got == ["tests/test_cuda.py::test_a PASSED [ 50%]", "tests/test_cuda.py::test_b FAILED",
                   "E           Failed: Timeout (>75.0s) from pytest-timeout.", "FAILED tests/test_cuda.py::test_b",
                   "==== 1 failed, 1 passed in 135.54s ===="]
    assert gc.test_outcomes("collecting ...\nKilled") == "collecting ...\nKilled"  # no outcome: the log's end


def test_runs_with_no_rate_are_named_per_experiment():
    job = {"overrides": ["seed=0"], "seed": 0, "model": "mlp", "max_steps": 10, "batch_size": 60, "eval_every": 5,
           "eval_examples": 0}
    est = gc.estimate([{"experiment": "c4_drift", "jobs": [job, job]}], [], [], [])
    assert est["missing"] == 2 and est["missing_by_experiment"] == {"c4_drift": 2}
    md = gc.render({}, {"estimate": est})
    assert "| c4_drift | 0.00 + 2 runs with no rate |" in md and "**a lower bound**" in md


def test_compiled_throughput_compiles_each_net_for_its_own_shapes(compiled_shapes):
    """Two nets through the same forward code (nn.Sequential's): without a fresh Dynamo cache the second is a
    recompile, which Dynamo makes shape-generic (seen on an H200: BN-Inception after ResNet-20 compiled for
    dynamic shapes and did not finish in the part's cap). Each graph must have static shapes."""
    import torch
    from torch import nn

    for n in (8, 12):
        net = nn.Sequential(nn.Flatten(), nn.Linear(n * n, 10))
        rate = gc.synthetic_rate(net, 4, (1, n, n), 10, torch.device("cpu"), bf16=False, channels_last=False,
                                 compiled=True, steps=2, warmup=2)
        assert rate > 0
    assert compiled_shapes == [False, False]


def test_render_and_the_dependency_check_leave_the_callers_signal_handlers(tmp_path, monkeypatch):
    """They ran in this test process and left gpu_check's SIGTERM handler behind, which made the trainer's
    preemption test exit instead of checkpointing."""
    import signal

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(gc, "NEEDED", ("no_such_module_xyz",))
    assert gc.main(["--out", str(tmp_path / "gpu.md")]) == 2
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text(json.dumps({"info": {}, "results": {}}))
    assert gc.main(["--render", str(tmp_path / "run"), "--out", str(tmp_path / "gpu.md")]) == 0
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_part_c_runs_on_the_cpu_under_bf16(tmp_path):
    """`--part suite --suite-overrides trainer.precision=bf16`: the GPU path's dtype bugs found without a GPU (it
    is how C7's bf16 failure was reproduced). One experiment end to end: its runs complete under bf16."""
    rows = tmp_path / "suite.jsonl"
    # native numerics: the question is the dtypes, not the last bits, and portable bf16 (no oneDNN) is 15x slower
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": "", "BNREPRO_PORTABLE_NUMERICS": "0"}
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--part", "suite", "--rows",
                           str(rows), "--cap", "300", "--suite-steps", "2", "--experiments", "c4_drift",
                           "--suite-overrides", "trainer.precision=bf16"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=320)
    assert done.returncode == 0, done.stderr[-2000:]
    (exp,) = gc.read_rows(rows)
    assert exp["experiment"] == "c4_drift" and exp["status"] == "completed" and exp["runs"]
    assert all(r["status"] == "completed" and "trainer.precision=bf16" in r["overrides"] for r in exp["runs"])
