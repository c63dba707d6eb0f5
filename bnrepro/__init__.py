"""bnrepro: reproduce the claims of the Batch Normalization paper and the work that tested it."""
from collections.abc import Mapping
from pathlib import Path

from omegaconf import OmegaConf

from bnrepro import numerics

numerics.pin()  # before any module of the package imports torch (bnrepro/numerics.py)


CONFIGS = Path(__file__).resolve().parents[1] / "configs"  # the Hydra config tree (an editable install: the repo's)


from bnrepro.errors import ConfigError  # noqa: E402,F401 - re-exported: `from bnrepro import ConfigError`


def flatten(tree: Mapping, prefix: str = "") -> dict:
    """{"model.norm": "bn", ...}: a nested config as dotted keys, the form the report, the config hash and the
    W&B arms compare configs in."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def lr_scaled_steps(steps: int, lr_mult: float, cap: int) -> int:
    """A step budget for a run at `lr_mult` x the base LR: `steps` (the budget at x1) scaled by 1/lr_mult for
    small rates, so a slow run gets the same LR x steps 'distance' to converge, never below `steps` (a large
    LR is no reason to stop early) and never above `cap` (the suite's time). Used by C10's configs."""
    return int(min(cap, max(steps, round(steps / float(lr_mult)))))


def steps_per(examples: int, batch: int) -> int:
    """Steps that show `examples` training examples at `batch` per step (C7's real-batch protocol: the same
    number of epochs at every batch size, as the GN paper trains)."""
    return max(1, int(examples) // int(batch))


# registered here, on import of the package, so that the trainer and the report (which resolves each run's
# .hydra/config.yaml) both know it
OmegaConf.register_new_resolver("bnrepro_lr_steps", lr_scaled_steps, replace=True)
OmegaConf.register_new_resolver("bnrepro_steps_per", steps_per, replace=True)

# the config's defaults, declared once in bnrepro/schema.py, go into Hydra's ConfigStore on import of the package,
# so that every composition (the trainer, the door, the report, the tests) finds them
from bnrepro.schema import register as _register  # noqa: E402 - after the resolvers, which compose needs too

_register()
