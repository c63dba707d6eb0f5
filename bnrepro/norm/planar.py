"""Running a 2-D (N, C, H, W) norm layer on the other inputs every norm takes: (N, C) features and (N, C, L)
sequences. timm's layers proposed after 2018 (FRN, EvoNorm) assert 4-D inputs; a feature vector is a 1x1 map and
a sequence an L x 1 map, which is what those layers' formulas mean for them (statistics over the positions there
are, one for features)."""
from __future__ import annotations

from torch import nn


class Planar(nn.Module):
    """`layer` (a 2-D norm) on (N, C), (N, C, L) and (N, C, H, W) inputs alike."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        if x.dim() == 4:
            return self.layer(x)
        if x.dim() not in (2, 3):
            raise ValueError(f"expected a (N, C, ...) input of 2 to 4 dimensions, got shape {tuple(x.shape)}")
        shape = x.shape
        y = self.layer(x.reshape(*shape, *(1,) * (4 - x.dim())))
        return y.reshape(shape)
