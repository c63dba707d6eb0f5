"""The paper's MNIST net (section 4.1): fully connected hidden layers, norm before each nonlinearity (after it
with model.norm_position=post, C17).

C12 (Yang et al. 2019) adds two options: `depth` (that many hidden layers, each `hidden[0]` wide, instead of the
`hidden` list) and `residual` (each hidden layer after the first adds its input to its output,
x + act(norm(W x)): the skip connection that tames BN's gradient explosion at init)."""
from __future__ import annotations

import math

from torch import nn

from bnrepro import ConfigError
from bnrepro.models.common import layer_bias, norm_act, scale_weights
from bnrepro.norm import Norm
from bnrepro.norm.group import IN_ON_FEATURES


class Residual(nn.Sequential):
    """x + layers(x): a hidden layer with a skip connection (model.residual)."""

    def forward(self, x):
        return x + super().forward(x)


class MLP(nn.Sequential):
    def __init__(self, in_shape, num_classes: int, norm: Norm, hidden=(100, 100, 100), act: str = "sigmoid",
                 dropout: float = 0.0, init_std: float = 0.1, init: str = "normal", depth: int | None = None,
                 residual: bool = False, init_scale: float = 1.0):
        if init not in INITS:
            raise ConfigError(f"unknown model.init '{init}': set it to one of {', '.join(INITS)}")
        if norm.kind == "in":  # checked here: a (N, C) input is all a fully connected layer's norm ever sees
            raise ConfigError(IN_ON_FEATURES)
        if depth is not None:
            if depth < 1:
                raise ConfigError(f"model.depth={depth}: an MLP needs at least one hidden layer")
            hidden = [hidden[0]] * depth
        layers, width = [nn.Flatten()], math.prod(in_shape)
        for h in hidden:
            # a norm right after the linear layer makes its bias redundant (the paper drops it)
            block = [nn.Linear(width, h, bias=layer_bias(norm)), *norm_act(norm, h, 1, act)]
            if dropout > 0:
                block.append(nn.Dropout(dropout))
            # a skip needs equal widths: the first hidden layer (from the input) never has one
            layers += [Residual(*block)] if residual and width == h else block
            width = h
        layers.append(nn.Linear(width, num_classes))
        super().__init__(*layers)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                INITS[init](m.weight, init_std, act)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        if init_scale != 1.0:  # the conv nets' multiplier (C17 sweeps one key across families)
            scale_weights(self, init_scale)


def xavier_gain(act: str) -> float:
    """Glorot & Bengio's init assumes a unit slope at 0; sigmoid's is 1/4, so its Glorot gain is 4 (Bengio
    2012, "Practical recommendations"; torch's calculate_gain says 1, which shrinks the backward signal ~4x
    per layer: a 6-layer sigmoid net starts with ~1e-4 of its gradient). tanh: 1 (Glorot's own; torch's 5/3 is
    for self-normalizing); relu: sqrt(2)."""
    return {"sigmoid": 4.0, "tanh": 1.0, "relu": math.sqrt(2.0)}[act]


# model.init: "normal" is the paper's "small random Gaussian values" at a fixed std (init_std, swept by C6);
# the fan-scaled ones give each arm of C3 its own fair start: Glorot/Xavier with the activation's gain keeps a
# sigmoid net without BN out of vanishing gradients at any width, Kaiming (fan_in) does the same for ReLU.
INITS = {
    "normal": lambda w, std, act: nn.init.normal_(w, std=std),
    "xavier": lambda w, std, act: nn.init.xavier_normal_(w, gain=xavier_gain(act)),
    "kaiming": lambda w, std, act: nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu"),
}
