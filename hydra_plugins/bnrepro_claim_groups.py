"""bnrepro's claim-owned config groups: a group that one claim uses lives in its claim's folder,
configs/claims/<experiment>/groups/<group>/ (C1's ladder: configs/claims/c1_speed/groups/ladder/), and is still
the top-level group `<group>`: its name is the command-line key (`ladder=bn_x30`) and part of each sweep job's
run dir (`runs/cpu/c1_speed/ladder=bn_x30,seed=0`).

Hydra finds this module by scanning the `hydra_plugins` namespace package (this repository's folder when Python
runs from the repo root or has it on PYTHONPATH; the installed package otherwise: pyproject.toml includes it).
Its SearchPathPlugin adds each claims/*/groups folder of the primary config dir to the config search path, found
on disk, not listed: a new claim's groups/ folder needs no edit anywhere. Stdlib and Hydra only: every Hydra app
in the environment imports this module when Hydra scans its plugins, so it imports nothing of bnrepro, and it
changes the search path only of an app whose primary config dir has claims/*/groups folders.
"""
from __future__ import annotations

from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

CLAIM_GROUPS = "claims/*/groups"  # relative to the config dir; each subfolder of a match is a top-level group
PROVIDER = "bnrepro claim groups"  # how `--info searchpath` names these entries


def group_roots(configs: Path) -> list[Path]:
    """The folders whose subfolders are top-level config groups, in search order: the config dir itself, then
    each claim's groups/ folder, by path."""
    return [configs, *sorted(p for p in Path(configs).glob(CLAIM_GROUPS) if p.is_dir())]


def group_dir(configs: Path, group: str) -> Path | None:
    """The folder of top-level config group `group` (configs/model, configs/claims/c1_speed/groups/ladder, ...);
    None when no folder of that name exists."""
    return next((root / group for root in group_roots(configs) if (root / group).is_dir()), None)


class ClaimGroupsSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        # the primary config dir: hydra.main's config_path (a plain path) or initialize_config_dir's (file://...);
        # a pkg:// one (initialize_config_module) is not a folder of this layout
        for element in list(search_path.get_path()):
            path = element.path[len("file://"):] if element.path.startswith("file://") else element.path
            if element.provider == "main" and "://" not in path:
                for root in group_roots(Path(path))[1:]:
                    search_path.append(PROVIDER, f"file://{root}")
