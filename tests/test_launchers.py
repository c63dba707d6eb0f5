"""The sweep launchers: joblib and submitit_local multiruns each write complete run directories, with torch
threads shared among the parallel jobs; the Slurm config composes with its requeue settings and a site file."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir

from bnrepro.resources import resolve
from conftest import CONFIGS, ROOT

TINY = ("trainer.max_steps=40", "trainer.eval_every=20", "logger=none", "seed=0,1")


def multirun(sweep_dir, *overrides):
    env = {**os.environ, "WANDB_MODE": "disabled"}
    res = subprocess.run([sys.executable, "-m", "bnrepro.train", "-m", *TINY, *overrides,
                          f"hydra.sweep.dir={sweep_dir}"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def assert_complete_runs(sweep_dir):
    runs = sorted(sweep_dir.glob("seed=*"))  # one dir per job, named by its overrides
    assert [r.name.split(",")[0] for r in runs] == ["seed=0", "seed=1"]
    for run in runs:
        assert json.loads((run / "summary.json").read_text())["status"] == "completed"
        assert [json.loads(r)["step"] for r in (run / "metrics.jsonl").read_text().splitlines()] == [20, 40]
        assert (run / ".hydra" / "config.yaml").exists() and (run / "checkpoints" / "last.pt").exists()
    # the two seeds are two different runs
    losses = [json.loads((r / "metrics.jsonl").read_text().splitlines()[0])["train_loss"] for r in runs]
    assert losses[0] != losses[1]


def test_joblib_multirun_writes_two_run_dirs(tmp_path):
    res = multirun(tmp_path, "hydra/launcher=joblib")  # n_jobs: this process's cores
    assert_complete_runs(tmp_path)
    assert res.stderr.count(", 1 torch threads,") == 2, res.stderr[-2000:]  # cores // n_jobs
    assert "ConfigStore schema" not in res.stderr


# ~40 s on 2 cores (submitit's job processes start slowly), in the default run: it is the Slurm path
def test_submitit_local_multirun_writes_two_run_dirs(tmp_path):
    multirun(tmp_path, "hydra/launcher=submitit_local")
    assert_complete_runs(tmp_path)
    logs = "".join(p.read_text() for p in (tmp_path / ".submitit").rglob("*.err"))
    assert logs.count(", 1 torch threads,") == 2, logs[-2000:]  # cpus_per_task: 1


def launcher_cfg(*overrides):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True).hydra.launcher


def test_slurm_config_requeues_and_reads_the_site_file(tmp_path):
    slurm = launcher_cfg("hydra/launcher=slurm")
    assert slurm._target_.endswith("SlurmLauncher")
    assert slurm.max_num_timeout > 0 and slurm.signal_delay_s > 0 and slurm.partition is None
    site = tmp_path / "hydra" / "launcher" / "site"
    site.mkdir(parents=True)
    (site / "slurm.yaml").write_text("partition: gpu_big\naccount: proj42\n")
    slurm = launcher_cfg("hydra/launcher=slurm", f"hydra.searchpath=[file://{tmp_path}]")
    assert slurm.partition == "gpu_big" and slurm.account == "proj42"
    assert launcher_cfg("hydra/launcher=slurm", "hydra.launcher.timeout_min=5").timeout_min == 5


def test_threads_setting(monkeypatch):
    cores = len(os.sched_getaffinity(0))
    assert resolve(threads=3).threads == 3
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setenv("BNREPRO_PARALLEL_JOBS", "2")
    assert resolve("auto").threads == max(1, cores // 2)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun's processes on this node share the cores too
    assert resolve("auto").threads == max(1, cores // 8)


EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))


def sweep(experiment: str, *cli: str):
    """The master config and the jobs of `python -m bnrepro.train -m experiment=E scale=cpu CLI...`, as Hydra's
    basic sweeper makes them (its sweeper.params and the command line's overrides, the cartesian product)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode

    import bnrepro.loop  # noqa: F401 - the bnrepro_cores resolver of the launcher config

    task = [f"experiment={experiment}", "scale=cpu", *cli]
    loader = GlobalHydra.instance().config_loader()
    master = loader.load_configuration("train", overrides=[*task, "hydra/launcher=joblib"], run_mode=RunMode.MULTIRUN)
    params = [f"{k}={v}" for k, v in (master.hydra.sweeper.params or {}).items()]
    parsed = OverridesParser.create(config_loader=loader).parse_overrides([*params, *task])
    return loader, master, [list(job) for job in BasicSweeper.split_arguments(parsed, None)[0]]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_compose_once_gives_hydras_config_for_every_kind_of_job(experiment):
    """hydra_plugins/bnrepro_launcher.py's cached composition is Hydra's, key for key and flag for flag: on the first
    and last job of every experiment's cpu sweep and one job per distinct choice of its config groups (data,
    ladder, ...), each also with a command-line value, a `+` addition and a group choice that no sweep makes."""
    from hydra_plugins.bnrepro_launcher import ComposeOnce
    from omegaconf import OmegaConf

    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        loader, master, jobs = sweep(experiment, "trainer.max_steps=7", "+trainer.tag=x", "logger=none")
        groups = {}
        for job in jobs:  # one job per distinct choice of config groups
            groups.setdefault(tuple(o for o in job if loader.repository.group_exists(o.split("=")[0])), job)
        picked = [jobs[0], jobs[-1], *groups.values()]
        once = ComposeOnce(loader)
        for job in picked:
            ours, hydras = once.take(master, job), loader.load_sweep_config(master, job)
            assert OmegaConf.to_yaml(ours) == OmegaConf.to_yaml(hydras), job
            assert OmegaConf.is_struct(ours) and not OmegaConf.is_readonly(ours.hydra)
            assert ours.hydra.job.override_dirname == hydras.hydra.job.override_dirname
        assert len(once.bases) == len(groups) and not once.jobs  # each group choice composed once, none kept


def test_compose_once_lets_hydra_refuse_a_bad_job():
    """A job Hydra cannot compose (an unknown group choice, a key not in the schema) fails as Hydra fails it."""
    from hydra.errors import ConfigCompositionException, MissingConfigException
    from hydra_plugins.bnrepro_launcher import ComposeOnce

    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        loader, master, jobs = sweep("c2_lr")
        once = ComposeOnce(loader)
        with pytest.raises(MissingConfigException):
            once.take(master, [*jobs[0], "data=no_such_data"])
        with pytest.raises(ConfigCompositionException):
            once.take(master, [*jobs[0], "trainer.no_such_key=1"])
