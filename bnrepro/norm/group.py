"""Normalization over each example's own values: Group, Layer and Instance Norm (Wu & He 2018)."""
from __future__ import annotations

from torch import nn

from bnrepro import ConfigError
from bnrepro.norm.registry import register_norm

IN_ON_FEATURES = ("model.norm=in normalizes each channel over its spatial positions, which a fully connected "
                  "layer has none of: use model.norm=ln or gn")


class SequenceInstanceNorm(nn.InstanceNorm1d):
    """IN for (N, C, L) sequences. torch's InstanceNorm1d would read an (N, C) input as one unbatched (C, L)
    example and quietly normalize across the batch; refuse that instead."""

    def forward(self, x):
        if x.dim() != 3:
            raise ConfigError(IN_ON_FEATURES)
        return super().forward(x)


@register_norm("gn", options=("norm_groups", "norm_eps"), label="GN", color="#2ca02c", about="Group Norm")
def gn(norm, channels: int, dim: int) -> nn.Module:
    if channels % norm.norm_groups:
        raise ConfigError(f"model.norm_groups={norm.norm_groups} does not divide a layer's {channels} channels: "
                          f"set model.norm_groups to a divisor of every layer's width")
    return nn.GroupNorm(norm.norm_groups, channels, eps=norm.norm_eps)


@register_norm("ln", options=("norm_eps",), label="LN", color="#9467bd", about="Layer Norm")
def ln(norm, channels: int, dim: int) -> nn.Module:
    # the GN paper's LN: one group over all of an example's (C, ...) values, per-channel gamma and beta; on (N, C)
    # features the same map as nn.LayerNorm(C), and it also takes (N, C, L) sequences
    return nn.GroupNorm(1, channels, eps=norm.norm_eps)


@register_norm("in", options=("norm_eps",), label="IN", color="#8c564b", about="Instance Norm")
def instance_norm(norm, channels: int, dim: int) -> nn.Module:
    if dim == 1:  # sequences
        return SequenceInstanceNorm(channels, eps=norm.norm_eps, affine=True)
    return nn.InstanceNorm2d(channels, eps=norm.norm_eps, affine=True)
