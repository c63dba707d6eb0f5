"""Checkpoints that are never torn, and the random state that makes a resumed run continue exactly.

Like timm's saver: write to a temporary file in the same folder, then `os.replace` it over the old one
(atomic on POSIX), keeping `last.pt` (resume), `previous.pt` (the one before, the fallback when last.pt is
unreadable) and `best.pt` (best validation accuracy so far; none without a val split).
"""
from __future__ import annotations

import random
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

from bnrepro.atomic import writing
from bnrepro.rundir import BEST, LAST, PREVIOUS


def rng_state() -> dict:
    """Every global random generator a step can draw from (dropout, noisy BN, Python and numpy users)."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    # RNG states are CPU byte tensors; a checkpoint loaded with map_location="cuda" moved them to the GPU
    # (seen on an H200: "RNG state must be a torch.ByteTensor" on resume)
    torch.set_rng_state(state["torch"].cpu())
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def atomic_save(obj, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with writing(path) as tmp:
        torch.save(obj, tmp)


def save_checkpoint(folder: Path, state: dict, is_best: bool = False) -> None:
    """Write state to folder/last.pt and, when is_best, also to folder/best.pt (copied, then renamed). A failed
    write leaves the checkpoints as they were and no temporary file (bnrepro/atomic.py)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with writing(folder / LAST, previous=folder / PREVIOUS) as tmp:  # a kill between its renames leaves previous.pt
        torch.save(state, tmp)
    if is_best:
        with writing(folder / BEST) as tmp:
            shutil.copyfile(folder / LAST, tmp)


def load_checkpoint(folder: Path, name: str = LAST, map_location="cpu") -> dict | None:
    """The saved state, or None when there is none. Our own files hold RNG states (numpy arrays, tuples),
    so they are loaded with weights_only=False."""
    path = Path(folder) / name
    if not path.is_file():
        return None
    return torch.load(path, map_location=map_location, weights_only=False)


def load_any(folder: Path, map_location="cpu", warn: bool = True) -> dict | None:
    """The newest readable checkpoint: last.pt, else previous.pt; None when neither exists or neither reads.
    An unreadable file (torn by a kill, a full disk) is named in a warning and left in place; never fatal."""
    for name in (LAST, PREVIOUS):
        path = Path(folder) / name
        try:
            state = load_checkpoint(folder, name, map_location)
        except Exception as e:  # noqa: BLE001 - torch.load raises RuntimeError, EOFError, UnpicklingError...
            if warn:
                print(f"warning: checkpoint {path} is unreadable ({type(e).__name__}: {str(e)[:80]}); "
                      "falling back to the one before", file=sys.stderr)
            continue
        if state is not None:
            return state
    if warn and Path(folder).is_dir() and any(Path(folder).glob("*.pt")):
        print(f"warning: no readable checkpoint in {folder}: the run restarts from step 0", file=sys.stderr)
    return None
