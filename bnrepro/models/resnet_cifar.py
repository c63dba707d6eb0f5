"""The CIFAR ResNets of He et al. 2016 (section 4.2): depth 6n+2, stages of 16/32/64 channels at 32/16/8
pixels, identity shortcuts that subsample and zero-pad channels (option A), global average pooling.
`residual=False` drops every shortcut: the paper's "plain" net of the same depth (C12 compares the two at init).

The same family runs on 1-D sequences: a (C, L) input shape (MNIST-1D's (1, 40)) builds Conv1d layers, 1-D
norms and pooling, stages at L, L/2, L/4 positions; a (C, H, W) shape builds the 2-D net. The rank of the
input is the only switch, so every claim config can use one model for both kinds of data."""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from bnrepro import ConfigError
from bnrepro.models.common import activation, conv_norm, conv_norm_act, init_weights
from bnrepro.norm import Norm


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, norm: Norm, act: str, dims: int = 2, residual: bool = True):
        super().__init__()
        self.residual = residual
        self.branch = nn.Sequential(conv_norm_act(cin, cout, 3, norm, act, stride, dims),
                                    conv_norm(cout, cout, 3, norm, dims=dims))
        self.stride, self.pad = stride, cout - cin
        self.act = activation(act)

    def forward(self, x):
        if not self.residual:  # He et al.'s "plain" counterpart: the same layers without the shortcut
            return self.act(self.branch(x))
        shortcut = x
        if self.stride > 1 or self.pad:  # option A: parameter-free, as in the paper's CIFAR experiments
            spatial = x.dim() - 2
            subsampled = x[(slice(None), slice(None)) + (slice(None, None, self.stride),) * spatial]
            shortcut = F.pad(subsampled, (0, 0) * spatial + (0, self.pad))  # zero channels appended
        return self.act(self.branch(x) + shortcut)

    def zero_init_last(self):
        """Start the residual branch at zero: the last norm's scale, or the last conv without a norm."""
        nn.init.zeros_(self.branch[-1][-1].weight)


class CifarResNet(nn.Sequential):
    def __init__(self, in_shape, num_classes: int, norm: Norm, act: str = "relu", dropout: float = 0.0,
                 init_scale: float = 1.0, depth: int = 20, width: int = 16, zero_init_residual: bool = False,
                 residual: bool = True):
        if depth < 8 or (depth - 2) % 6:
            raise ConfigError(f"model.depth={depth}: CIFAR ResNets have depth 6n+2 (8, 20, 32, 44, 56, 110)")
        dims = len(in_shape) - 1  # spatial axes: 1 for (C, L) sequences, 2 for (C, H, W) images
        if dims not in (1, 2):
            raise ConfigError(f"model=resnet_cifar takes (C, L) sequences or (C, H, W) images, got input shape "
                              f"{tuple(in_shape)}: use model=mlp for flat feature vectors")
        n = (depth - 2) // 6
        layers = [conv_norm_act(in_shape[0], width, 3, norm, act, dims=dims)]
        cin = width
        for stage in range(3):
            cout = width * 2 ** stage
            for i in range(n):
                layers.append(BasicBlock(cin, cout, 2 if stage and i == 0 else 1, norm, act, dims, residual))
                cin = cout
        layers += [(nn.AdaptiveAvgPool1d if dims == 1 else nn.AdaptiveAvgPool2d)(1), nn.Flatten()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(cin, num_classes))
        super().__init__(*layers)
        init_weights(self, init_scale)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    m.zero_init_last()
