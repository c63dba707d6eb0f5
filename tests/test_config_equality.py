"""Every job the suite can launch composes to a pinned config: a change to configs/ that is meant to be a pure
refactor (moving a key into a shared file, merging copies, renaming a helper group) must leave each of them
identical, because a run's identity is the hash of its resolved config (bnrepro/identity.py): a changed
composition would orphan every finished run dir.

The jobs: every experiment (configs/experiment/*.yaml) x every scale x every point of its sweep
(hydra.sweeper.params, seeds included), plus every model, and every norm_batch arm that no sweep runs, on their
own. Each is pinned by its run identity, bnrepro.identity.config_hash (the resolved config but the keys that
cannot change a run's numbers, null keys and other norms' options), in tests/data/composed_configs.json. First
generated from main at 01f47b1, before the configs/ clean-up of issue 9; regenerated in issue 20 when every key's
default moved into bnrepro/schema.py and the hash began to leave null keys out, after checking that every job's
resolved config, nulls left out, was unchanged but for two keys the identity ignores (data.download and
data.workers, now present in every dataset's config).

When a config change is MEANT to change runs, regenerate the pins and say so in the commit:
    BNREPRO_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/test_config_equality.py
"""
from __future__ import annotations

import itertools
import json
import os

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bnrepro.door import cfg_without_hydra
from bnrepro.identity import config_hash  # (importing bnrepro registers the resolvers the configs use)
from conftest import CONFIGS, ROOT
from hydra_plugins.bnrepro_claim_groups import group_dir
from hydra_plugins.bnrepro_launcher import sweep_configs

GOLDEN = ROOT / "tests" / "data" / "composed_configs.json"
SCALES = ("cpu", "cifar", "imagenet")


def digest(container: dict) -> str:
    return config_hash(container)


def composed() -> dict[str, str]:
    """{job id: digest} for every job of every experiment's sweep at every scale, and the extras.

    Each sweep's jobs are composed as the suite's launcher composes them (hydra_plugins/bnrepro_launcher.py: each
    choice of config groups by Hydra, once; the value axes applied to a copy by Hydra's own function), which
    tests/test_launchers.py checks against Hydra's full composition."""
    out = {}
    for scale in SCALES:
        swept = set()
        for exp in sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml")):
            base = [f"experiment={exp}", f"scale={scale}"]
            master, compose_once = sweep_configs(CONFIGS, base)
            params = OmegaConf.to_container(master.hydra.sweeper.params, resolve=True) or {}
            keys = sorted(params)
            for values in itertools.product(*(str(params[k]).split(",") for k in keys)):
                job = base + [f"{k}={v}" for k, v in zip(keys, values)]
                swept.update(o for o in job[2:] if group_dir(CONFIGS, o.split("=")[0]))
                cfg = cfg_without_hydra(compose_once.take(master, job))
                out[" ".join(job)] = digest(OmegaConf.to_container(cfg, resolve=True))
        models = sorted(p.stem for p in (CONFIGS / "model").glob("*.yaml"))
        extras = [[f"scale={scale}", f"model={m}"] for m in models]
        extras += [["experiment=c7_small_batch", f"scale={scale}", f"norm_batch={arm}"]  # the arms no sweep runs
                   for arm in sorted(p.stem for p in group_dir(CONFIGS, "norm_batch").glob("*.yaml"))
                   if f"norm_batch={arm}" not in swept]
        with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
            for over in extras:
                out[" ".join(over)] = digest(OmegaConf.to_container(compose("train", overrides=over), resolve=True))
    return out


def test_every_job_composes_to_its_pinned_config():
    now = composed()
    if os.environ.get("BNREPRO_REGEN_GOLDEN"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(now, indent=0, sort_keys=True) + "\n")
    pinned = json.loads(GOLDEN.read_text())
    missing, extra = sorted(set(pinned) - set(now)), sorted(set(now) - set(pinned))
    changed = sorted(job for job in set(pinned) & set(now) if pinned[job] != now[job])
    assert not (missing or extra or changed), (
        f"{len(changed)} jobs compose differently (e.g. {changed[:3]}), {len(missing)} pinned jobs are gone "
        f"(e.g. {missing[:3]}), {len(extra)} are new (e.g. {extra[:3]}); compare with main: "
        f"python -m bnrepro.train <job> --cfg job")
