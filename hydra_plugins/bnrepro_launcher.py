"""`hydra/launcher=joblib` as bnrepro runs it: hydra-joblib-launcher's loky workers, each job's config composed
once, in the launching process, and mostly from a cache.

Why: stock Hydra composes a multirun job's config twice, once in the launching process when the sweeper checks the
batch (Sweeper.validate_batch_is_legal) and again in the worker that runs it, and one composition of bnrepro's
config tree costs ~0.2 CPU s: as much as the training steps of the cpu suite's smallest runs (C11-C15), and, at
900 runs, about a fifth of the suite's CPU time (scripts/profile_suite.py). Here:
  - the sweeper's check and the launcher share one composition per job (ComposeOnce below stands in for
    hydra_context.config_loader: the sweeper and its launcher hold the same HydraContext), and the worker gets the
    composed config instead of composing it again;
  - a job's config groups (data=mnist1d, ladder=bn_x30, the master's hydra/... choices) are composed once per
    distinct choice by Hydra itself, and the job's value overrides (seed=2000, model.norm=bn) are applied to a copy
    by Hydra's own ConfigLoaderImpl._apply_overrides_to_config, as Hydra applies them after it has composed the
    defaults list (value overrides cannot change a defaults list). Anything else (a sweep inside a job, a
    deletion or append of a group) takes Hydra's full composition.
The configs are Hydra's, key for key (tests/test_launchers.py composes jobs of every experiment both ways).

Stdlib, Hydra, OmegaConf and the joblib launcher only: every Hydra app in the environment imports this module when
Hydra scans its plugins, so it imports nothing of bnrepro.
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any, Sequence

from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_joblib_launcher._core import process_joblib_cfg
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

log = logging.getLogger(__name__)


class ComposeOnce:
    """A ConfigLoader whose load_sweep_config composes each job once (kept until the launcher takes it) and each
    distinct choice of config groups once; every other attribute is the wrapped loader's."""

    def __init__(self, loader):
        self.loader = loader
        self.bases: dict[tuple, DictConfig] = {}  # (master's hydra overrides, job's group overrides) -> config
        self.jobs: dict[tuple, DictConfig] = {}  # a checked job's overrides -> its config, until launched

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        key = tuple(sweep_overrides)
        if key not in self.jobs:
            self.jobs[key] = self.compose(master_config, list(sweep_overrides))
        return self.jobs[key]

    def take(self, master_config: DictConfig, sweep_overrides: Sequence[str]) -> DictConfig:
        """The job's config, composed now unless the sweeper's check composed it already (then forgotten here)."""
        cfg = self.load_sweep_config(master_config, list(sweep_overrides))
        del self.jobs[tuple(sweep_overrides)]
        return cfg

    def compose(self, master_config: DictConfig, overrides: list[str]) -> DictConfig:
        parsed = OverridesParser.create().parse_overrides(overrides)
        repo = self.loader.repository
        if any(o.is_sweep_override() or o.is_hydra_override() for o in parsed):
            return self.loader.load_sweep_config(master_config, overrides)  # Hydra refuses or handles these itself
        # Hydra's own split (hydra._internal.defaults_list.Overrides): a dict value or a key that is no group is a
        # value override; the rest choose, delete or append config groups and need the defaults list
        is_value = [isinstance(o.value(), dict) or not repo.group_exists(o.key_or_group) for o in parsed]
        values = [o for o, value in zip(parsed, is_value) if value]
        groups = [o.input_line for o, value in zip(parsed, is_value) if not value]
        key = (tuple(OmegaConf.to_container(master_config.hydra.overrides.hydra)), tuple(groups))
        if key not in self.bases:
            self.bases[key] = self.loader.load_sweep_config(master_config, groups)
        cfg = copy.deepcopy(self.bases[key])
        ConfigLoaderImpl._apply_overrides_to_config(values, cfg)  # noqa: SLF001 - what Hydra's composition calls
        _record_overrides(cfg, parsed)
        OmegaConf.copy_cache(from_config=master_config, to_config=cfg)
        return cfg


def sweep_configs(config_dir: str | Path, overrides: Sequence[str]) -> tuple[DictConfig, ComposeOnce]:
    """The master config of a multirun with `overrides` (`-m experiment=c2_lr scale=cpu`) from the primary config
    `train` in config_dir, and a ComposeOnce that composes its jobs as this launcher does:
    `compose_once.take(master, [*overrides, "seed=2000", ...])`."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration("train", overrides=list(overrides), run_mode=RunMode.MULTIRUN)
    return master, ComposeOnce(loader)


def _record_overrides(cfg: DictConfig, parsed: list[Override]) -> None:
    """hydra.overrides.task and hydra.job.override_dirname of the job, as ConfigLoaderImpl writes them: every
    override in the order given."""
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.overrides.task = [o.input_line for o in parsed]
        dirname = cfg.hydra.job.config.override_dirname
        cfg.hydra.job.override_dirname = get_overrides_dirname(
            overrides=parsed, kv_sep=dirname.kv_sep, item_sep=dirname.item_sep, exclude_keys=dirname.exclude_keys)


def run_composed(idx: int, sweep_config: DictConfig, hydra_context: HydraContext, task_function: TaskFunction,
                 singleton_state: dict[Any, Any]) -> JobReturn:
    """A worker's job: hydra_joblib_launcher._core.execute_job with the config composed already."""
    setup_globals()
    Singleton.set_state(singleton_state)
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
        sweep_config.hydra.job.num = idx
    HydraConfig.instance().set_config(sweep_config)
    return run_job(hydra_context=hydra_context, config=sweep_config, task_function=task_function,
                   job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")


class ComposeOnceJoblibLauncher(JoblibLauncher):
    """hydra-joblib-launcher (loky workers, its settings and log lines), each job composed once (module doc)."""

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.worker_context = HydraContext(config_loader=hydra_context.config_loader, callbacks=hydra_context.callbacks)
        self.compose_once = ComposeOnce(hydra_context.config_loader)
        # the sweeper checks each batch through this same HydraContext before it launches it
        hydra_context.config_loader = self.compose_once

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from joblib import Parallel, delayed

        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        joblib_cfg = self.joblib
        joblib_cfg["backend"] = "loky"  # as the joblib launcher: the threading backend is incompatible with Hydra
        process_joblib_cfg(joblib_cfg)
        log.info(f"Joblib.Parallel({','.join(f'{k}={v}' for k, v in joblib_cfg.items())}) is launching "
                 f"{len(job_overrides)} jobs")
        log.info(f"Launching jobs, sweep output dir : {sweep_dir}")
        for idx, overrides in enumerate(job_overrides):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        configs = [self.compose_once.take(self.config, overrides) for overrides in job_overrides]
        singleton_state = Singleton.get_state()
        runs = Parallel(**joblib_cfg)(
            delayed(run_composed)(initial_job_idx + idx, cfg, self.worker_context, self.task_function,
                                  singleton_state)
            for idx, cfg in enumerate(configs))
        assert all(isinstance(run, JobReturn) for run in runs)
        return runs
