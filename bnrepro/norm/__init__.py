"""The norms: every model builds its normalization layers through `Norm`, named by `model.norm`.

Each norm is a builder registered once in the file of its family (batch.py: bn, frozen_bn; ghost.py: ghost_bn,
brn; noisy.py: noisy_bn; group.py: gn, ln, in; weight.py: wn, mean_only_bn, wn_mean_only_bn), with the model
options it reads, whether it needs batch statistics, and its label and colour (registry.py). The families are
found, not listed: every module of this package is imported here. A user's norm is named by a dotted path or
registered by a plugin package (registry.py); CONTRIBUTING.md has the recipe.

Every layer that normalizes with batch statistics subclasses torch's `_BatchNorm`, so running statistics,
precise BN, folding and SyncBN conversion treat them all alike. Every layer works on 1d (N, C) and conv
(N, C, H, W) inputs.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass

import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from bnrepro import ConfigError
from bnrepro.norm.batch import GlobalBatchNorm
from bnrepro.norm.ghost import brn_schedule, check_brn_schedule
# the registry's API, here so that importing it also imports (registers) every family
from bnrepro.norm.registry import NORMS as REGISTRY, NormSpec, find, norm_spec, other_options, register_norm, unknown

for _family in pkgutil.iter_modules(__path__):  # every family file registers its norms when imported
    importlib.import_module(f"{__name__}.{_family.name}")
register_norm("none", label="no BN", color="#7f7f7f", about="no normalization")(None)  # no layer at all
NORMS = tuple(REGISTRY)  # the built-in norms' names (a plugin's join REGISTRY when it is first named)
__all__ = ["NORMS", "REGISTRY", "NormSpec", "find", "norm_spec", "other_options", "register_norm", "unknown",
           "Norm", "validate_batch", "convert_sync_bn"]


@dataclass(frozen=True)
class Norm:
    """Builds the normalization layer for `channels` channels. `dim` follows torch's BatchNorm1d/2d: 1 takes
    (N, C) features (MLP) and (N, C, L) sequences (1-D conv nets), 2 takes (N, C, H, W) feature maps.

    `ghost_batch` is honored by ghost_bn and brn and ignored by the other norms, so one sweep can cross norms
    with normalization batch sizes."""

    kind: str = "bn"
    momentum: float = 0.1
    eps: float = 1e-5
    groups: int = 32
    ghost_batch: int = 0
    brn_rmax: float = 3.0
    brn_dmax: float = 5.0
    brn_hold: int = 5000          # Batch Renorm paper: plain BN for the first 5k steps,
    brn_rmax_at: int = 40000      # r_max reaches brn_rmax at 40k steps,
    brn_dmax_at: int = 25000      # d_max reaches brn_dmax at 25k steps
    brn_warmup: int | None = None  # set: the schedule above scaled so that it ends at this step (short runs)
    noise_mean: float = 0.5
    noise_std: float = 0.5

    def __post_init__(self):
        norm_spec(self.kind)  # ConfigError for a name that is no norm
        if self.groups < 1:
            raise ConfigError(f"model.norm_groups={self.groups}: set it to a positive divisor of the channels")
        if self.ghost_batch < 0:
            raise ConfigError(f"model.ghost_batch={self.ghost_batch}: set it to 0 (whole batch) or a positive size")
        if self.brn_rmax < 1 or self.brn_dmax < 0:
            raise ConfigError(f"model.brn_rmax={self.brn_rmax}, model.brn_dmax={self.brn_dmax}: "
                              f"set model.brn_rmax >= 1 and model.brn_dmax >= 0")
        check_brn_schedule(self.brn_hold, self.brn_rmax_at, self.brn_dmax_at, self.brn_warmup)

    @property
    def spec(self) -> NormSpec:
        return norm_spec(self.kind)

    def brn_schedule(self) -> tuple[int, int, int]:
        """Batch Renorm's (hold, r_max_at, d_max_at) in training steps (see `brn_schedule`)."""
        return brn_schedule(self.brn_hold, self.brn_rmax_at, self.brn_dmax_at, self.brn_warmup)

    @property
    def weight_norm(self) -> bool:
        """The norm reparameterizes the layers before its own once the model is built (its spec's `finish`: wn
        and wn_mean_only_bn), so they cannot start from a zero weight."""
        return self.spec.finish is not None

    def finish(self, model: nn.Module) -> nn.Module:
        """What the norm does outside its own layers, once the model is built and initialized (the spec's
        `finish`: wn and wn_mean_only_bn reparameterize the layer before each of theirs, weight.py); the other
        norms leave the model as it is."""
        return self.spec.finish(model, self.kind) if self.spec.finish else model

    @property
    def enabled(self) -> bool:
        """False for `none`: the model then adds no norm module and keeps the layer biases."""
        return self.spec.build is not None

    def __call__(self, channels: int, dim: int) -> nn.Module:
        if not self.enabled:
            raise ValueError("Norm('none') builds no layer: check `norm.enabled` first")
        if dim not in (1, 2):
            raise ValueError(f"dim is 1 (features or sequences) or 2 (feature maps), got {dim}")
        return self.spec.build(self, channels, dim)


def _batch_stat_norms(model: nn.Module) -> list[_BatchNorm]:
    # a BN class that normalizes with running statistics only says so with batch_statistics = False (frozen_bn)
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and getattr(m, "batch_statistics", True)]


def validate_batch(model: nn.Module, batch_size: int) -> None:
    """Raise ConfigError when the model's norms cannot train on batches of `batch_size` examples."""
    norms = _batch_stat_norms(model)
    if norms and batch_size < 2:
        raise ConfigError("BN needs more than one example per batch: "
                          "set trainer.batch_size >= 2 or model.norm=gn|ln|none")
    for m in norms:
        ghost = getattr(m, "ghost_batch", 0)
        if ghost and batch_size % ghost:
            raise ConfigError(f"trainer.batch_size={batch_size} is not a multiple of model.ghost_batch={ghost}: "
                              f"change one of them")


def convert_sync_bn(model: nn.Module) -> nn.Module:
    """Make every plain BN layer normalize over the global batch of all processes (model.norm_sync=true):
    torch's SyncBatchNorm on CUDA, GlobalBatchNorm on the CPU. ghost_bn and brn keep their per-process
    sub-batches by design, frozen_bn and noisy_bn stay as they are. No-op outside a multi-process run."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return model
    cuda = any(p.is_cuda for p in model.parameters())
    sync_cls = nn.SyncBatchNorm if cuda else GlobalBatchNorm
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) in (nn.BatchNorm1d, nn.BatchNorm2d):
                sync = sync_cls(child.num_features, eps=child.eps, momentum=child.momentum, affine=child.affine,
                                track_running_stats=child.track_running_stats)
                sync.to(child.running_mean.device).load_state_dict(child.state_dict())
                setattr(parent, name, sync.train(child.training))
    return model
