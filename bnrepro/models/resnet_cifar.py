"""The CIFAR ResNets of He et al. 2016 (section 4.2): depth 6n+2, stages of 16/32/64 channels at 32/16/8
pixels, identity shortcuts that subsample and zero-pad channels (option A), global average pooling."""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from bnrepro import ConfigError
from bnrepro.models.common import activation, conv_norm, conv_norm_act, init_weights
from bnrepro.norm import Norm


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, norm: Norm, act: str):
        super().__init__()
        self.branch = nn.Sequential(conv_norm_act(cin, cout, 3, norm, act, stride), conv_norm(cout, cout, 3, norm))
        self.stride, self.pad = stride, cout - cin
        self.act = activation(act)

    def forward(self, x):
        shortcut = x
        if self.stride > 1 or self.pad:  # option A: parameter-free, as in the paper's CIFAR experiments
            shortcut = F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, 0, self.pad))
        return self.act(self.branch(x) + shortcut)

    def zero_init_last(self):
        """Start the residual branch at zero: the last norm's scale, or the last conv without a norm."""
        nn.init.zeros_(self.branch[-1][-1].weight)


class CifarResNet(nn.Sequential):
    def __init__(self, in_shape, num_classes: int, norm: Norm, act: str = "relu", dropout: float = 0.0,
                 init_scale: float = 1.0, depth: int = 20, width: int = 16, zero_init_residual: bool = False):
        if depth < 8 or (depth - 2) % 6:
            raise ConfigError(f"model.depth={depth}: CIFAR ResNets have depth 6n+2 (8, 20, 32, 44, 56, 110)")
        n = (depth - 2) // 6
        layers = [conv_norm_act(in_shape[0], width, 3, norm, act)]
        cin = width
        for stage in range(3):
            cout = width * 2 ** stage
            for i in range(n):
                layers.append(BasicBlock(cin, cout, 2 if stage and i == 0 else 1, norm, act))
                cin = cout
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(cin, num_classes))
        super().__init__(*layers)
        init_weights(self, init_scale)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    m.zero_init_last()
