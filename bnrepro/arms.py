"""The arm of a run: the values of the config keys its experiment varies, other than the seed.

The varied keys are read once, at import, from the sweeps the experiments declare
(`hydra.sweeper.params` of configs/experiment/<name>.yaml and of configs/claims/<name>/<scale>.yaml), so a
new experiment or a changed sweep needs no edit here. W&B's job type is the arm (tracking.py) and the report's
dashboards group by it (report/wandb_report.py): both call `arm_of`.

A sweep over a config group (C1's `ladder`, C7's `norm_batch`) is named by the option the run used, found by
matching the literal values of each option file against the run's config (the run's config does not record
Hydra's choices). A group's folder is configs/<group>/ or, for a group of one claim,
configs/claims/<experiment>/groups/<group>/ (hydra_plugins/bnrepro_claim_groups.py puts those on Hydra's
search path).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import yaml

from bnrepro import CONFIGS, flatten
from hydra_plugins.bnrepro_claim_groups import group_dir

# swept in every experiment but never part of an arm: the seed, and the dataset or, where a claim runs more than
# one net on a dataset, the cell (dataset and net: configs/cell/), a verdict each, judged apart
# (bnrepro/report/judging.judge_claim)
SWEEP_ONLY = ("seed", "data", "cell")


def _sweep_keys(path: Path) -> list[str]:
    """The keys of a config file's `hydra.sweeper.params`, in the file's order, without Hydra's +/~ prefixes."""
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return []
    params = ((tree.get("hydra") or {}).get("sweeper") or {}).get("params") or {}
    return [str(key).lstrip("+~") for key in params]


def _read_sweeps(configs: Path) -> dict[str, dict[str, tuple[str, ...]]]:
    """{experiment name: {"*": keys of the experiment file, scale: keys the scale's claims file adds}}."""
    sweeps = {}
    for path in sorted((configs / "experiment").glob("*.yaml")):
        tree = yaml.safe_load(path.read_text()) or {}
        name = tree.get("name") or path.stem
        per_scale = {"*": tuple(k for k in _sweep_keys(path) if k not in SWEEP_ONLY)}
        for scale_file in sorted((configs / "claims" / path.stem).glob("*.yaml")):
            extra = tuple(k for k in _sweep_keys(scale_file) if k not in SWEEP_ONLY)
            if extra:
                per_scale[scale_file.stem] = extra
        sweeps[name] = per_scale
    return sweeps


def _read_options(folder: Path) -> dict[str, dict]:
    """{option: its literal leaves} for a config group's folder (interpolations and the defaults list left out)."""
    options = {}
    for path in sorted(folder.glob("*.yaml")):
        tree = yaml.safe_load(path.read_text()) or {}
        tree.pop("defaults", None)
        options[path.stem] = {k: v for k, v in flatten(tree).items() if not (isinstance(v, str) and "${" in v)}
    return options


def claim_order(experiment: str) -> tuple:
    """fig1 first, then C1, C2, ..., C15 by their number; anything else after, by name."""
    number = re.fullmatch(r"c(\d+)_\w+", experiment)
    return (0, 0, experiment) if experiment == "fig1" else (1, int(number[1]), "") if number else (2, 0, experiment)


# every experiment of the suite, found (configs/experiment/*.yaml), not listed: make reproduce and gpu_check run
# these (`python -m bnrepro.arms` prints them)
EXPERIMENTS = sorted((p.stem for p in (CONFIGS / "experiment").glob("*.yaml")), key=claim_order)
SWEEPS = _read_sweeps(CONFIGS)
GROUPS = {key: _read_options(group_dir(CONFIGS, key)) for per_scale in SWEEPS.values() for keys in per_scale.values()
          for key in keys if "." not in key and group_dir(CONFIGS, key)}


def varied_keys(name: str | None, scale: str | None = None) -> tuple[str, ...]:
    """The keys experiment `name` sweeps at `scale` (config groups by their name), seed excluded; scale None:
    the keys it sweeps at any scale."""
    per_scale = SWEEPS.get(name or "", {})
    if scale is None:  # unknown scale: every key any scale sweeps
        return tuple(dict.fromkeys(k for keys in per_scale.values() for k in keys))
    keys = per_scale.get("*", ()) + per_scale.get(scale, ())
    return tuple(dict.fromkeys(keys))


def lookup(cfg, key: str, default=None):
    """cfg[key] for a flat dict with dotted keys (the report's Run.config) or a nested one (an OmegaConf
    DictConfig at run time)."""
    if isinstance(cfg, Mapping) and key in cfg:
        return cfg[key]
    node = cfg
    for part in key.split("."):
        try:
            node = node[part]
        except Exception:  # noqa: BLE001 - missing key, None node, or an interpolation that cannot resolve
            return default
    return node


def _same(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return a == b


def option_of(cfg, group: str) -> str | None:
    """The option of config group `group` whose literal values the config holds: of those that match, the most
    specific (the most keys compared; the first by name among equals), so that C7's real_gn_32 is not named by
    gn, whose two values it also holds. Keys the config lacks are not compared, but at least one must be there."""
    missing = object()
    best, best_n = None, 0
    for option, leaves in GROUPS.get(group, {}).items():
        found = {key: lookup(cfg, key, missing) for key in leaves}
        present = {key: value for key, value in found.items() if value is not missing}
        if len(present) > best_n and all(_same(value, leaves[key]) for key, value in present.items()):
            best, best_n = option, len(present)
    return best


def _fmt(value) -> str:
    if isinstance(value, (list, tuple)):
        return "x".join(map(_fmt, value))
    return str(value)


def arm_of(cfg) -> str:
    """The run's arm as a short label, e.g. "norm=bn,lr_mult=5" (C2) or "norm_batch=bn_4" (C7); "" for a run
    whose experiment sweeps nothing but the seed (or is unknown). Each key is named by its last component
    unless two varied keys share it."""
    name = lookup(cfg, "name")
    scale = lookup(cfg, "scale_name") or lookup(cfg, "scale")
    keys = varied_keys(name, scale if isinstance(scale, str) else None)
    short = [key.rsplit(".", 1)[-1] for key in keys]
    parts = []
    for key, label in zip(keys, short):
        label = label if short.count(label) == 1 else key
        if key in GROUPS:
            value = option_of(cfg, key) or "other"
        else:
            value = lookup(cfg, key)
        parts.append(f"{label}={_fmt(value)}")
    return ",".join(parts)[:64]  # W&B's job type holds at most 64 characters


if __name__ == "__main__":
    print(" ".join(EXPERIMENTS))
