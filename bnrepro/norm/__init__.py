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

import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from bnrepro import ConfigError
from bnrepro.schema import NormOptions, validate
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


class Norm:
    """Builds the normalization layer for `channels` channels. `dim` follows torch's BatchNorm1d/2d: 1 takes
    (N, C) features (MLP) and (N, C, L) sequences (1-D conv nets), 2 takes (N, C, H, W) feature maps.

    `Norm(norm, **options)`: the norm's name (`model.norm`) and any of the model's norm options by their config
    keys (bnrepro.schema.NormOptions declares them, with their defaults); a builder reads them as attributes
    (`norm.norm_eps`, `norm.ghost_batch`). `ghost_batch` is honoured by ghost_bn and brn and ignored by the
    other norms, so one sweep can cross norms with normalization batch sizes."""

    def __init__(self, norm: str = "bn", **options):
        self.options = validate({"norm": norm, **options}, NormOptions, at=("model",))
        norm_spec(norm)  # ConfigError for a name that is no norm
        o = self.options
        check_brn_schedule(o.brn_hold, o.brn_rmax_at, o.brn_dmax_at, o.brn_warmup)
        if self.position == "post" and self.spec.finish is not None:
            raise ConfigError(f"model.norm={norm} with model.norm_position=post: weight normalization "
                              "reparameterizes the layer before its norm, so it has no place after the nonlinearity; "
                              "set model.norm_position=pre")

    @classmethod
    def of(cls, model) -> "Norm":
        """The norm of a model config (a mapping with the model.* keys): its norm keys, the others left out."""
        return cls(**{key: model[key] for key in NormOptions.model_fields if key in model})

    def __getattr__(self, key):  # a norm option by its config key (only reached for names not set on self)
        options = self.__dict__.get("options")
        if options is None or key not in NormOptions.model_fields:
            raise AttributeError(key)
        return getattr(options, key)

    def __eq__(self, other) -> bool:
        return isinstance(other, Norm) and self.options == other.options

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.options.model_dump().items(), key=str)))

    def __repr__(self) -> str:
        return f"Norm({self.kind!r})"

    @property
    def kind(self) -> str:
        return self.options.norm

    @property
    def position(self) -> str:
        """"pre" (on the layer's output, before the nonlinearity: the paper's) or "post" (after it): C17."""
        return self.options.norm_position or "pre"

    @property
    def spec(self) -> NormSpec:
        return norm_spec(self.kind)

    def brn_schedule(self) -> tuple[int, int, int]:
        """Batch Renorm's (hold, r_max_at, d_max_at) in training steps (see `brn_schedule`)."""
        o = self.options
        return brn_schedule(o.brn_hold, o.brn_rmax_at, o.brn_dmax_at, o.brn_warmup)

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
