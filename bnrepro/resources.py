"""CPU resources, decided once at startup and passed down as plain numbers.

`resolve(cfg)` reads the cores this process may use (os.sched_getaffinity: what Slurm or taskset granted) and
how many jobs share them (the joblib launcher's n_jobs, submitit's cpus_per_task, torchrun's processes on this
node, or BNREPRO_PARALLEL_JOBS), and returns torch threads and DataLoader workers. A number in the config wins
over `auto`. The numbers a run computes depend on its torch thread count, so scales that promise
launcher-independent numbers fix `trainer.threads` (cpu scale: 1 thread per run, the suite parallel across
runs); `auto` is for scales where speed matters more than bitwise equality across launchers (GPU runs).

`machine()` describes the hardware and libraries the numbers came from (summary.json's `machine`).
"""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass

MAX_WORKERS = 8


@dataclass(frozen=True)
class Resources:
    cores: int      # cores this process may use
    jobs: int       # processes sharing them (parallel sweep jobs x torchrun processes on this node)
    threads: int    # torch intra-op threads of this process
    workers: int    # DataLoader workers of this process (streamed datasets only)


def parallel_jobs() -> int:
    """Jobs running beside this one on the same cores, from the launcher that started it (1 when alone)."""
    jobs = int(os.environ.get("BNREPRO_PARALLEL_JOBS", "0"))
    if not jobs:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            launcher = HydraConfig.get().launcher
            target = launcher.get("_target_", "")
            cores = len(os.sched_getaffinity(0))
            if target.endswith("JoblibLauncher"):
                jobs = cores if launcher.n_jobs < 0 else launcher.n_jobs
            elif target.endswith("LocalLauncher"):  # submitit_local: each job gets cpus_per_task cores
                jobs = max(1, cores // max(1, launcher.get("cpus_per_task") or 1))
    return max(1, jobs) * int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def resolve(threads="auto", workers="auto") -> Resources:
    cores = len(os.sched_getaffinity(0))
    jobs = parallel_jobs()
    share = max(1, cores // jobs)
    return Resources(cores=cores, jobs=jobs,
                     threads=share if threads == "auto" else max(1, int(threads)),
                     workers=min(MAX_WORKERS, share) if workers == "auto" else int(workers))


def from_config(cfg) -> Resources:
    return resolve(cfg.trainer.threads, cfg.data.workers)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """CPU model and instruction set, and the versions of the libraries that compute the numbers."""
    import torch

    from bnrepro import numerics

    cfg = torch.__config__.show()
    lines = cfg.splitlines()
    mkl = next((line.split("Library Version")[-1].split("-")[0].strip() for line in lines
                if "Math Kernel Library" in line), None)
    onednn = next((line.split("MKL-DNN")[-1].split("(")[0].strip() for line in lines if "MKL-DNN" in line), None)
    out = {"cpu": _cpu_model(), "arch": platform.machine(), "isa": torch.backends.cpu.get_cpu_capability(),
           "torch": torch.__version__, "mkl": mkl, "onednn": onednn,
           "mkl_cbwr": os.environ.get("MKL_CBWR"), "numerics": numerics.mode(), "cuda": None}
    if torch.cuda.is_available():
        out["cuda"] = {"device": torch.cuda.get_device_name(), "cuda": torch.version.cuda,
                       "cudnn": torch.backends.cudnn.version()}
    return out
