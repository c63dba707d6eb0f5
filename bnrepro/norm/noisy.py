"""Santurkar et al.'s noisy BN."""
from __future__ import annotations

import torch
from torch import nn

from bnrepro.norm.batch import AnyDimBatchNorm
from bnrepro.norm.registry import register_norm


class NoisyBatchNorm(AnyDimBatchNorm):
    """Santurkar et al.'s "noisy BN": BN followed, in training only, by a random scale and shift per example
    and channel, y * (1 + s * z1) + (mu + s * z2) with z ~ N(0, 1), whose distribution itself changes at every
    step: per channel mu ~ U(-noise_mean, noise_mean) and s ~ U(0, noise_std), drawn at each forward."""

    def __init__(self, num_features: int, noise_mean: float = 0.5, noise_std: float = 0.5, **kw):
        super().__init__(num_features, **kw)
        self.noise_mean, self.noise_std = noise_mean, noise_std

    def forward(self, x):
        y = super().forward(x)
        if not self.training:
            return y
        per_channel = (1, x.shape[1]) + (1,) * (x.dim() - 2)
        per_example = (x.shape[0],) + per_channel[1:]
        mu = torch.empty(per_channel, device=x.device, dtype=y.dtype).uniform_(-self.noise_mean, self.noise_mean)
        s = torch.empty(per_channel, device=x.device, dtype=y.dtype).uniform_(0.0, self.noise_std)
        z = torch.randn((2,) + per_example, device=x.device, dtype=y.dtype)
        return y * (1 + s * z[0]) + (mu + s * z[1])


@register_norm("noisy_bn", options=("noise_mean", "noise_std", "norm_momentum", "norm_eps"), batch_stats=True,
               label="noisy BN", color="#ff7f0e",
               about="BN + random time-varying shift and scale (Santurkar et al.)")
def noisy_bn(norm, channels: int, dim: int) -> nn.Module:
    return NoisyBatchNorm(channels, norm.noise_mean, norm.noise_std, eps=norm.norm_eps, momentum=norm.norm_momentum)
