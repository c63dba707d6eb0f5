"""ImageNet ResNet-18 and ResNet-50 (He et al. 2016): timm's ResNet with our norm and activation passed in."""
from __future__ import annotations

import torch
from timm.models.resnet import BasicBlock, Bottleneck
from timm.models.resnet import ResNet as TimmResNet
from torch import nn

from bnrepro import ConfigError
from bnrepro.models.common import activation, init_weights, require_images
from bnrepro.norm import Norm

ARCHS = {"resnet18": (BasicBlock, (2, 2, 2, 2)), "resnet50": (Bottleneck, (3, 4, 6, 3))}


class ResNet(TimmResNet):
    def __init__(self, in_shape, num_classes: int, norm: Norm, act: str = "relu", dropout: float = 0.0,
                 init_scale: float = 1.0, arch: str = "resnet50", zero_init_residual: bool = False):
        if arch not in ARCHS:
            raise ConfigError(f"unknown model.arch '{arch}': choose one of {', '.join(ARCHS)}")
        require_images(in_shape, "resnet")
        activation(act)  # fail early on an unknown name

        def norm_layer(channels, **_):  # timm passes device/dtype
            return norm(channels, dim=2) if norm.enabled else nn.Identity()

        def act_layer(inplace=False):  # out of place, so forward hooks see each input unchanged
            return activation(act)

        block, layers = ARCHS[arch]
        super().__init__(block, layers, num_classes=num_classes, in_chans=in_shape[0], act_layer=act_layer,
                         norm_layer=norm_layer, drop_rate=dropout, zero_init_last=False)
        if not norm.enabled:  # timm's convs have no bias: give it back where no norm absorbs it
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    m.bias = nn.Parameter(torch.zeros(m.out_channels))
        if norm.enabled and norm.position == "post":
            self._norms_after_activations()
        init_weights(self, init_scale)  # the same conv init as our other families
        if zero_init_residual:
            if norm.weight_norm:  # g = ||v|| = 0 would make w = g v / ||v|| undefined
                raise ConfigError(f"model.zero_init_residual=true with model.norm={norm.kind}: weight "
                                  "normalization cannot start from a zero weight; set zero_init_residual=false")
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    last = m.bn3 if isinstance(m, Bottleneck) else m.bn2
                    conv = m.conv3 if isinstance(m, Bottleneck) else m.conv2
                    scaled = norm.enabled and isinstance(getattr(last, "weight", None), nn.Parameter)  # mean-only BN: none
                    nn.init.zeros_((last if scaled else conv).weight)

    def _norms_after_activations(self) -> None:
        """model.norm_position=post (C17): each norm that timm puts between a conv and its nonlinearity (the stem's,
        a block's first, a bottleneck's second) moves after the nonlinearity, and the conv gets its bias back; the
        last norm of a block feeds the residual sum, not a nonlinearity, and stays."""
        def move(owner, conv: str, bn: str, act: str) -> None:
            layer = getattr(owner, conv)
            layer.bias = nn.Parameter(torch.zeros(layer.out_channels))
            setattr(owner, act, nn.Sequential(getattr(owner, act), getattr(owner, bn)))
            setattr(owner, bn, nn.Identity())

        move(self, "conv1", "bn1", "act1")
        for m in self.modules():
            if isinstance(m, (BasicBlock, Bottleneck)):
                move(m, "conv1", "bn1", "act1")
                if isinstance(m, Bottleneck):
                    move(m, "conv2", "bn2", "act2")
