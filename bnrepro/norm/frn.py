"""Filter Response Normalization with its Thresholded Linear Unit (Singh & Krishnan 2020), timm's layer:
y = max(gamma * x / sqrt(nu2 + eps) + beta, tau), nu2 the mean of x^2 over each example's positions, per channel.
No batch statistics, no mean subtraction. It carries its own nonlinearity (TLU); in bnrepro's nets the net's
activation still follows it, as it follows every norm (everything else equal). On an MLP's features (one position)
nu2 = x^2, so the layer maps each unit to about sign(x): FRN's paper meant it for conv nets."""
from __future__ import annotations

from timm.layers import FilterResponseNormTlu2d
from torch import nn

from bnrepro.norm.planar import Planar
from bnrepro.norm.registry import register_norm

EPS = 1e-6


@register_norm("frn", label="FRN+TLU", color="#17becf",
               about="Filter Response Normalization + TLU (timm)")
def frn(norm, channels: int, dim: int) -> nn.Module:
    # eps 1e-6, the FRN paper's (Singh & Krishnan, section 3), fixed: a BN-sized 1e-5 is not the layer they tested
    return Planar(FilterResponseNormTlu2d(channels, eps=EPS))
