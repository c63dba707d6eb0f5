"""A run is identified by its config: a hash of the resolved config minus the keys that cannot change its numbers.

The trainer keeps its own copy of what Hydra wrote into `.hydra/` the first time a run dir was used
(`.bnrepro/`, with `identity.json`: the hash and the resolved config). Hydra rewrites `.hydra/` before every
task starts, so a later launch in the same dir restores the original files: the dir always describes the
config its metrics came from. A launch whose hash differs is refused (one line naming what differs), or, with
`trainer.overwrite=true`, the old run's own files are moved aside (never deleted) and the new one starts fresh.

A run dir is never a folder of the user's: a dir that holds anything but a run's own files (RUN_FILES) is
refused, so `hydra.run.dir=.` in a repository cannot write into it or move it. And one process at a time
trains a run: `RunLock`, an flock the kernel releases when its holder dies (a SIGKILL leaves no stale lock).
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bnrepro import ConfigError, atomic, flatten
from bnrepro.norm import other_options
from bnrepro.rundir import (ASIDE, CHECKPOINTS, FINISHED, HYDRA, IDENTITY, LOCK, OWN, RUN_FILES, Damaged,
                            holds_results, is_run_file, read_summary, upgrade)

# Keys that do not change a run's numbers: where it logs, where files live, how fast it goes, how it shows.
IGNORED = ("logger", "trainer.device", "trainer.progress", "trainer.progress_every_s", "trainer.ckpt_every",
           "trainer.overwrite", "trainer.wait_for_lock", "trainer.compile", "data.root", "data.download",
           "data.workers", "hydra")
MOVED_ASIDE = RUN_FILES - {HYDRA, LOCK}  # a run's own files: .hydra/ is this launch's, the lock is held


def identity_config(cfg: DictConfig | dict) -> dict:
    """The flattened resolved config that the hash covers: all but IGNORED, the options of norms other than the
    run's (bnrepro.norm.other_options), and null keys, so that a new norm, norm option or key leaves every existing
    hash as it is: a key declared in bnrepro/schema.py with the default null ("this option has no such key", e.g.
    model.depth of the MLP) is hashed as the absent key it replaces. A config of an older layout is hashed as
    today's (rundir.upgrade). A hash recorded before a key left the identity or moved is still matched, by its
    recorded config (same_config)."""
    tree = upgrade(OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg)
    model = tree.get("model")
    unread = {f"model.{key}" for key in other_options(model.get("norm"))} if isinstance(model, dict) else set()
    flat = flatten(tree)
    return {k: v for k, v in sorted(flat.items())
            if v is not None and k not in unread and not any(k == i or k.startswith(i + ".") for i in IGNORED)}


def config_hash(cfg: DictConfig | dict) -> str:
    text = json.dumps(identity_config(cfg), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def differences(old: dict, new: dict, limit: int = 4) -> str:
    a, b = identity_config(old), identity_config(new)
    keys = sorted(k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>"))
    text = ", ".join(f"{k}: {a.get(k, '<absent>')!r} there, {b.get(k, '<absent>')!r} now" for k in keys[:limit])
    return text + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _write_json(path: Path, obj) -> None:
    atomic.write_json(path, obj, indent=1, default=str)


def recorded(run_dir: Path) -> dict | None:
    """{'config_hash', 'config'} of the run in run_dir: from identity.json, else (a run older than this file)
    from its checkpoint's stored config; None when the dir holds no run yet."""
    path = Path(run_dir) / IDENTITY
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    from bnrepro.checkpoint import load_any

    ckpt = load_any(Path(run_dir) / CHECKPOINTS, warn=False)
    if ckpt is not None and ckpt.get("config"):
        return {"config_hash": ckpt.get("config_hash") or config_hash(ckpt["config"]), "config": ckpt["config"]}
    return None


def refuse_foreign(run_dir: Path) -> None:
    """ConfigError when run_dir holds anything a run does not write (a repository, a user's files)."""
    run_dir = Path(run_dir)
    foreign = sorted(p.name for p in run_dir.iterdir() if not is_run_file(p.name)) if run_dir.is_dir() else []
    if foreign:
        shown = ", ".join(foreign[:4]) + (f" and {len(foreign) - 4} more" if len(foreign) > 4 else "")
        raise ConfigError(f"{run_dir.absolute()} is not a run dir: it holds {shown}, which no run writes; bnrepro trains "
                          "only in a new or empty dir or one of its own runs: choose another hydra.run.dir=... "
                          "(hydra.sweep.dir=... for -m)")


def same_config(old: dict, cfg) -> bool:
    """The recorded run is of this config: the same hash, or (a hash made when other keys counted, before a
    key joined IGNORED) the same identity config."""
    return old["config_hash"] == config_hash(cfg) or bool(old["config"]) and \
        identity_config(old["config"]) == identity_config(cfg)


def claim_dir(cfg: DictConfig, run_dir: Path, overwrite: bool = False, code: dict | None = None) -> str:
    """Make run_dir this config's run dir and return the config's hash.

    A new dir records the config (a copy of Hydra's .hydra/ and identity.json, with `code`: the code version it
    started from). A dir of the same config gets its original .hydra/ back (and a warning when its code
    differs from `code`). A dir of another config raises ConfigError, or, with overwrite, has its run moved
    to <parent>/.aside/<name>-<time> and this run starts fresh. A dir holding anything else is refused."""
    run_dir, own = Path(run_dir), Path(run_dir) / OWN
    refuse_foreign(run_dir)
    h = config_hash(cfg)
    old = recorded(run_dir)
    if old is None and holds_results(run_dir):
        old = {"config_hash": None, "config": {}}  # results from a run that recorded no config: not ours to reuse
    if old is not None and not same_config(old, cfg):
        if not overwrite:
            restore_hydra(run_dir)  # Hydra rewrote .hydra/ for this launch: the old run keeps its own
            what = differences(old["config"], cfg) if old["config"] else "the old run recorded no config"
            raise ConfigError(f"{run_dir} holds a run of another config ({what}): use a new run dir "
                              "(hydra.run.dir=... or hydra.sweep.dir=...) or add trainer.overwrite=true to move "
                              "the old run aside")
        move_aside(run_dir)
        old = None
    if old is None:
        own.mkdir(parents=True, exist_ok=True)
        if (run_dir / HYDRA).is_dir():
            shutil.rmtree(own / "hydra", ignore_errors=True)
            shutil.copytree(run_dir / HYDRA, own / "hydra")
        _write_json(run_dir / IDENTITY, {"config_hash": h, "config": OmegaConf.to_container(cfg, resolve=True),
                                            "code": code})
    else:
        restore_hydra(run_dir)
        started = old.get("code")
        if code and started and code_key(started) != code_key(code) and not finished(run_dir):
            print(f"warning: {run_dir} was started from code {describe(started)} and resumes from "
                  f"{describe(code)}: its numbers come from two versions of the code", file=sys.stderr)
    return h


def finished(run_dir: Path) -> bool:
    """The run dir holds a finished run (which is skipped, not resumed: no other code touches its numbers)."""
    try:
        return (read_summary(run_dir) or {}).get("status") in FINISHED
    except (Damaged, OSError):
        return False


def code_key(code: dict) -> tuple:
    return code.get("git_rev"), code.get("code_hash")


def describe(code: dict) -> str:
    return f"{code.get('git_rev')}" + (f" with uncommitted changes {code.get('code_hash')}" if code.get("git_dirty")
                                       else "")


def started_from(run_dir: Path) -> dict | None:
    """The code version a run dir's run started from (identity.json's `code`), None for older runs."""
    try:
        return json.loads((Path(run_dir) / IDENTITY).read_text()).get("code")
    except (OSError, ValueError, AttributeError):
        return None


def restore_hydra(run_dir: Path) -> None:
    """Put back the .hydra/ files of the run's first launch (Hydra rewrote them for this one)."""
    saved = Path(run_dir) / OWN / "hydra"
    if not saved.is_dir():
        return
    for f in saved.iterdir():
        tmp = Path(run_dir) / HYDRA / f".{f.name}.tmp{os.getpid()}"
        tmp.parent.mkdir(exist_ok=True)
        shutil.copyfile(f, tmp)
        os.replace(tmp, Path(run_dir) / HYDRA / f.name)


def move_aside(run_dir: Path) -> Path:
    """Move the old run's own files out of run_dir (keeping the .hydra/ of this launch and the lock in place)
    and say where."""
    run_dir = Path(run_dir)
    refuse_foreign(run_dir)
    aside = run_dir.parent / ASIDE / f"{run_dir.name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    aside.mkdir(parents=True)
    for entry in run_dir.iterdir():
        if entry.name in MOVED_ASIDE:
            os.replace(entry, aside / entry.name)
    if (aside / OWN / "hydra").is_dir():
        shutil.copytree(aside / OWN / "hydra", aside / HYDRA)
    print(f"warning: trainer.overwrite=true: the old run in {run_dir} moved to {aside}", file=sys.stderr)
    return aside


class RunLocked(ConfigError):
    """Another process holds the run dir's lock."""


class RunLock:
    """An exclusive lock on a run dir for the life of one process's training of it (`with RunLock(d, wait):`).

    flock on `<run dir>/.lock`: released by the kernel when the holder exits, however it dies. The file holds
    the holder's PID and host, which the refusal names. wait=False: a held lock raises RunLocked (exit 2);
    wait=True: wait for the holder to finish (then the run is skipped as finished, or resumed)."""

    def __init__(self, run_dir: Path, wait: bool = False):
        self.path, self.wait, self.fd = Path(run_dir) / LOCK, wait, None

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                who = self.holder()
                if not self.wait:
                    raise RunLocked(f"{self.path.parent} is being trained by another process ({who}): "
                                    "wait for it, stop it, or add trainer.wait_for_lock=true to wait") from None
                print(f"{self.path.parent}: waiting for the process that trains it ({who})",
                      file=sys.stderr, flush=True)
                fcntl.flock(fd, fcntl.LOCK_EX)
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
