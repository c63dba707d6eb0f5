"""Data-parallel plumbing: process group from torchrun's environment, rank helpers, exact reductions.

`torchrun --nproc_per_node=N -m bnrepro.train ...` sets RANK, WORLD_SIZE and LOCAL_RANK; without them
everything here degrades to a single process (rank 0 of 1) with no process group.
"""
from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device_kind: str) -> torch.device | None:
    """Join the process group torchrun describes (NCCL for cuda, gloo for cpu) and return this process's
    device (cuda:LOCAL_RANK on GPU). Returns None and does nothing outside torchrun."""
    if not launched_by_torchrun() or is_distributed():
        return None
    if device_kind == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device, timeout=timedelta(minutes=30))
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo", timeout=timedelta(minutes=30))
    return device


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Only rank 0 writes files and talks to W&B."""
    return rank() == 0


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of t over all ranks (in place; returns t). With exact per-rank counts summed alongside, means
    over the whole split are exact: every rank evaluates a disjoint, unpadded share."""
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def any_rank(flag: bool, device: torch.device) -> bool:
    """True when flag is true on any rank (e.g. a signal that reached only some processes)."""
    if not is_distributed():
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def broadcast_object(obj):
    """rank 0's obj on every rank (e.g. the run directory, so all ranks agree on one)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def teardown(finished: bool) -> None:
    """Free the process group while the interpreter is whole, after a finished job only once every rank is
    done (no barrier after a failure: the other ranks may never reach it). Leaving it to interpreter exit made
    rank 0 abort about one completed sync-BN run in eight ("terminate called without an active exception",
    SIGABRT): gloo's threads were torn down while the peer had already gone."""
    if is_distributed():
        import gc

        if finished:
            dist.barrier()
        gc.collect()
        dist.destroy_process_group()
