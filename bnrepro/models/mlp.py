"""The paper's MNIST net (section 4.1): fully connected hidden layers, norm before each nonlinearity."""
from __future__ import annotations

import math

from torch import nn

from bnrepro import ConfigError
from bnrepro.models.common import activation
from bnrepro.norm import IN_ON_FEATURES, Norm


class MLP(nn.Sequential):
    def __init__(self, in_shape, num_classes: int, norm: Norm, hidden=(100, 100, 100), act: str = "sigmoid",
                 dropout: float = 0.0, init_std: float = 0.1):
        if norm.kind == "in":  # checked here: a (N, C) input is all a fully connected layer's norm ever sees
            raise ConfigError(IN_ON_FEATURES)
        layers, width = [nn.Flatten()], math.prod(in_shape)
        for h in hidden:
            # a norm after the linear layer makes its bias redundant (the paper drops it)
            layers.append(nn.Linear(width, h, bias=not norm.enabled))
            if norm.enabled:
                layers.append(norm(h, dim=1))
            layers.append(activation(act))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, num_classes))
        super().__init__(*layers)
        for m in self.modules():
            if isinstance(m, nn.Linear):  # "small random Gaussian values"; init_std is swept by C6
                nn.init.normal_(m.weight, std=init_std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
