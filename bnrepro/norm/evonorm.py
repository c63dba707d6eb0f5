"""EvoNorm (Liu et al. 2020), timm's layers: norm and activation found by architecture search.

S0 (no batch statistics): y = x * sigmoid(v x) / sqrt(group variance + eps) * gamma + beta, the variance over each
example's group of C/G channels and its positions (model.norm_groups groups, as GN).
B0 (batch statistics): y = x / max(sqrt(batch variance + eps), v x + sqrt(instance variance + eps)) * gamma + beta,
the batch variance per channel over the batch and positions (a running average at inference), the instance
variance over each example's positions.
Both carry a nonlinearity of their own; in bnrepro's nets the net's activation still follows them, as it follows
every norm. They are not torch `_BatchNorm`s: B0's running variance is its own buffer, so it is not folded."""
from __future__ import annotations

from timm.layers import EvoNorm2dB0, EvoNorm2dS0
from torch import nn

from bnrepro import ConfigError
from bnrepro.norm.planar import Planar
from bnrepro.norm.registry import register_norm


@register_norm("evonorm_s0", options=("norm_groups", "norm_eps"), label="EvoNorm-S0", color="#e377c2",
               about="EvoNorm-S0 (timm): group statistics, swish-like numerator")
def evonorm_s0(norm, channels: int, dim: int) -> nn.Module:
    if channels % norm.norm_groups:
        raise ConfigError(f"model.norm_groups={norm.norm_groups} does not divide a layer's {channels} channels: "
                          f"set model.norm_groups to a divisor of every layer's width")
    return Planar(EvoNorm2dS0(channels, groups=norm.norm_groups, eps=norm.norm_eps))


@register_norm("evonorm_b0", options=("norm_momentum",), batch_stats=True, label="EvoNorm-B0", color="#bcbd22",
               about="EvoNorm-B0 (timm): batch and instance statistics")
def evonorm_b0(norm, channels: int, dim: int) -> nn.Module:
    # eps 1e-3: timm's default and the EvoNorm paper's
    return Planar(EvoNorm2dB0(channels, momentum=norm.norm_momentum))
