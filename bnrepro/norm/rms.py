"""RMSNorm (Zhang & Sennrich 2019), written from the paper (eq. 4): a_i / RMS(a) * g_i + b_i, RMS(a) =
sqrt(mean of a^2 + eps) over each example's values, its C features or, in a conv net, all its (C, ...) values (as
bnrepro's LN takes them); a gain and a bias per channel (the paper keeps the layer's bias b_i, which bnrepro's
nets drop from the linear layer before a norm). No batch statistics and no mean subtraction."""
from __future__ import annotations

import torch
from torch import nn

from bnrepro.norm.registry import register_norm


class RMSNorm(nn.Module):
    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        dims = tuple(range(1, x.dim()))
        rms = torch.sqrt(x.pow(2).mean(dim=dims, keepdim=True) + self.eps)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x / rms * self.weight.view(shape) + self.bias.view(shape)


@register_norm("rmsnorm", options=("norm_eps",), label="RMSNorm", color="#8c6d31",
               about="RMSNorm (Zhang & Sennrich): RMS over each example, no centring")
def rmsnorm(norm, channels: int, dim: int) -> nn.Module:
    return RMSNorm(channels, norm.norm_eps)
