import torch
from torch import nn


class ScaleNorm(nn.Module):
    """ScaleNorm (Nguyen & Salazar 2019): y = g * sqrt(d) * x / ||x||, the norm over each example's d values, one
    learned scalar g for the whole layer (their g starts at sqrt(d); here sqrt(d) is a constant and g starts at 1)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.g = nn.Parameter(torch.ones(()))

    def forward(self, x):
        rms = x.flatten(1).pow(2).mean(dim=1).add(self.eps).sqrt()  # ||x|| / sqrt(d)
        return self.g * x / rms.view(-1, *(1,) * (x.dim() - 1))
