"""A run is identified by its config: a hash of the resolved config minus the keys that cannot change its numbers.

The trainer keeps its own copy of what Hydra wrote into `.hydra/` the first time a run dir was used
(`.bnrepro/`, with `identity.json`: the hash and the resolved config). Hydra rewrites `.hydra/` before every
task starts, so a later launch in the same dir restores the original files: the dir always describes the
config its metrics came from. A launch whose hash differs is refused (one line naming what differs), or, with
`trainer.overwrite=true`, the old run is moved aside (never deleted) and the new one starts fresh.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bnrepro import ConfigError, flatten

# Keys that do not change a run's numbers: where it logs, where files live, how fast it goes, how it shows.
IGNORED = ("logger", "trainer.device", "trainer.progress", "trainer.ckpt_every", "trainer.overwrite",
           "trainer.compile", "data.root", "data.download", "data.workers", "hydra")
OWN = ".bnrepro"          # the trainer's copy of the first .hydra/ and identity.json
ASIDE = ".aside"          # where trainer.overwrite=true moves an old run (a hidden folder beside the run dir)


def identity_config(cfg: DictConfig | dict) -> dict:
    """The flattened resolved config that the hash covers."""
    tree = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    flat = flatten(tree)
    return {k: v for k, v in sorted(flat.items()) if not any(k == i or k.startswith(i + ".") for i in IGNORED)}


def config_hash(cfg: DictConfig | dict) -> str:
    text = json.dumps(identity_config(cfg), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def differences(old: dict, new: dict, limit: int = 4) -> str:
    a, b = identity_config(old), identity_config(new)
    keys = sorted(k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>"))
    text = ", ".join(f"{k}: {a.get(k, '<absent>')!r} there, {b.get(k, '<absent>')!r} now" for k in keys[:limit])
    return text + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)


def recorded(run_dir: Path) -> dict | None:
    """{'config_hash', 'config'} of the run in run_dir: from identity.json, else (a run older than this file)
    from its checkpoint's stored config; None when the dir holds no run yet."""
    path = Path(run_dir) / OWN / "identity.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    from bnrepro.checkpoint import load_any

    ckpt = load_any(Path(run_dir) / "checkpoints", warn=False)
    if ckpt is not None and ckpt.get("config"):
        return {"config_hash": ckpt.get("config_hash") or config_hash(ckpt["config"]), "config": ckpt["config"]}
    return None


def holds_results(run_dir: Path) -> bool:
    run_dir = Path(run_dir)
    return any((run_dir / p).exists() for p in ("summary.json", "metrics.jsonl", "checkpoints"))


def claim_dir(cfg: DictConfig, run_dir: Path, overwrite: bool = False) -> str:
    """Make run_dir this config's run dir and return the config's hash.

    A new dir records the config (a copy of Hydra's .hydra/ and identity.json). A dir of the same config
    gets its original .hydra/ back. A dir of another config raises ConfigError, or, with overwrite, is moved
    to <parent>/.aside/<name>-<time> and this run starts fresh."""
    run_dir, own = Path(run_dir), Path(run_dir) / OWN
    h = config_hash(cfg)
    old = recorded(run_dir)
    if old is None and holds_results(run_dir):
        old = {"config_hash": None, "config": {}}  # results from a run that recorded no config: not ours to reuse
    if old is not None and old["config_hash"] != h:
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
        if (run_dir / ".hydra").is_dir():
            shutil.rmtree(own / "hydra", ignore_errors=True)
            shutil.copytree(run_dir / ".hydra", own / "hydra")
        _write_json(own / "identity.json", {"config_hash": h, "config": OmegaConf.to_container(cfg, resolve=True)})
    else:
        restore_hydra(run_dir)
    return h


def restore_hydra(run_dir: Path) -> None:
    """Put back the .hydra/ files of the run's first launch (Hydra rewrote them for this one)."""
    saved = Path(run_dir) / OWN / "hydra"
    if not saved.is_dir():
        return
    for f in saved.iterdir():
        tmp = Path(run_dir) / ".hydra" / f".{f.name}.tmp{os.getpid()}"
        tmp.parent.mkdir(exist_ok=True)
        shutil.copyfile(f, tmp)
        os.replace(tmp, Path(run_dir) / ".hydra" / f.name)


def move_aside(run_dir: Path) -> Path:
    """Move the old run out of run_dir (keeping the .hydra/ of this launch in place) and say where."""
    run_dir = Path(run_dir)
    aside = run_dir.parent / ASIDE / f"{run_dir.name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    aside.mkdir(parents=True)
    for entry in run_dir.iterdir():
        if entry.name != ".hydra" and not entry.name.endswith(".log"):
            os.replace(entry, aside / entry.name)
    if (aside / OWN / "hydra").is_dir():
        shutil.copytree(aside / OWN / "hydra", aside / ".hydra")
    print(f"warning: trainer.overwrite=true: the old run in {run_dir} moved to {aside}", file=sys.stderr)
    return aside
