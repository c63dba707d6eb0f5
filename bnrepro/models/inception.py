"""BN-Inception (the paper's appendix, Fig. 5) and the GoogLeNet-layout Inception baseline (Szegedy et al. 2014).

One builder: a stem, a list of Inception modules, global average pooling and the classifier. `stem` picks the
input scale (imagenet 224x224, cifar 32x32, digits 8x8), `width_mult` thins every layer for CPU-scale runs.
"""
from __future__ import annotations

import functools
from collections import OrderedDict
from typing import NamedTuple

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from bnrepro import ConfigError
from bnrepro.models.common import activation, conv_norm_act, init_weights, require_images
from bnrepro.norm import Norm


class Row(NamedTuple):
    """One module's row of the paper's tables; `pool` is avg or max, proj 0 passes the pooled input through."""

    name: str
    n1x1: int
    n3x3_reduce: int
    n3x3: int
    nwide_reduce: int  # the double-3x3 branch (BN-Inception) or the 5x5 branch (GoogLeNet)
    nwide: int
    pool: str
    proj: int
    stride: int = 1


# Fig. 5 of the paper: 3c and 4e downsample with stride 2, no pooling layer between stages
BN_INCEPTION = (
    Row("3a", 64, 64, 64, 64, 96, "avg", 32), Row("3b", 64, 64, 96, 64, 96, "avg", 64),
    Row("3c", 0, 128, 160, 64, 96, "max", 0, 2),
    Row("4a", 224, 64, 96, 96, 128, "avg", 128), Row("4b", 192, 96, 128, 96, 128, "avg", 128),
    Row("4c", 160, 128, 160, 128, 160, "avg", 128), Row("4d", 96, 128, 192, 160, 192, "avg", 128),
    Row("4e", 0, 128, 192, 192, 256, "max", 0, 2),
    Row("5a", 352, 192, 320, 160, 224, "avg", 128), Row("5b", 352, 192, 320, 192, 224, "max", 128),
)
# Table 1 of Szegedy et al. 2014; None is a 3x3/2 max pooling between stages
GOOGLENET = (
    Row("3a", 64, 96, 128, 16, 32, "max", 32), Row("3b", 128, 128, 192, 32, 96, "max", 64), None,
    Row("4a", 192, 96, 208, 16, 48, "max", 64), Row("4b", 160, 112, 224, 24, 64, "max", 64),
    Row("4c", 128, 128, 256, 24, 64, "max", 64), Row("4d", 112, 144, 288, 32, 64, "max", 64),
    Row("4e", 256, 160, 320, 32, 128, "max", 128), None,
    Row("5a", 256, 160, 320, 32, 128, "max", 128), Row("5b", 384, 192, 384, 48, 128, "max", 128),
)
STEMS = ("auto", "imagenet", "cifar", "digits")


def avg_pool2d_in_nchw(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    if x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
        return F.avg_pool2d(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
    return F.avg_pool2d(x.contiguous(), kernel_size, stride, padding, ceil_mode, count_include_pad,
                        divisor_override).contiguous(memory_format=torch.channels_last)


torch.fx.wrap("avg_pool2d_in_nchw")  # one opaque call to torch.fx tracers (fold_bn's): they cannot branch on layout


class AvgPool2dNCHW(nn.AvgPool2d):
    """A padded average pool that runs in NCHW while `via_nchw` is set. CUDA's channels_last backward of a padded
    avg_pool2d returned wrong input gradients (pytorch/pytorch#188344: the NHWC kernel forgot the padding offset;
    fixed upstream by #188345, July 2026). The torch 2.11 of our H200 check predates the fix, and there
    BN-Inception's gradients below its first pool branch were 76% off in channels_last while the ResNets (no padded
    avg pool) agreed. The copies in and out cost time (a BN-Inception step on the CPU: 1.38x NCHW's speed in
    channels_last, 1.21x through this route; results/bench/channels_last.md), so `to_channels_last` clears
    `via_nchw` where this torch's own kernel is right; set, it is right on every torch."""

    via_nchw = True

    def forward(self, x):
        if not self.via_nchw:
            return super().forward(x)
        return avg_pool2d_in_nchw(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                                  self.count_include_pad, self.divisor_override)


@functools.cache
def channels_last_avg_pool_is_right(device_type: str) -> bool:
    """Whether this torch's channels_last backward of a padded average pool gives NCHW's gradient on a device
    type: one tiny pass each way, on fixed numbers (no RNG drawn, so a run's numbers do not depend on it)."""
    x = torch.arange(2 * 5 * 5, dtype=torch.float64, device=device_type).reshape(1, 2, 5, 5)
    grad_out = torch.cos(x)
    grads = []
    with torch.enable_grad():
        for t in (x, x.contiguous(memory_format=torch.channels_last)):
            t = t.detach().requires_grad_()
            F.avg_pool2d(t, 3, 1, 1, count_include_pad=False).backward(grad_out)
            grads.append(t.grad)
    return torch.allclose(*grads)


class InceptionModule(nn.Module):
    def __init__(self, cin: int, row: Row, double_3x3: bool, norm: Norm, act: str):
        super().__init__()

        def unit(ci, co, k, stride=1):
            return conv_norm_act(ci, co, k, norm, act, stride)

        s = row.stride
        self.branches = nn.ModuleList()
        if row.n1x1:
            self.branches.append(unit(cin, row.n1x1, 1))
        self.branches.append(nn.Sequential(unit(cin, row.n3x3_reduce, 1), unit(row.n3x3_reduce, row.n3x3, 3, s)))
        wide = ([unit(row.nwide_reduce, row.nwide, 3), unit(row.nwide, row.nwide, 3, s)] if double_3x3
                else [unit(row.nwide_reduce, row.nwide, 5, s)])
        self.branches.append(nn.Sequential(unit(cin, row.nwide_reduce, 1), *wide))
        pool = (AvgPool2dNCHW(3, s, 1, count_include_pad=False) if row.pool == "avg" else nn.MaxPool2d(3, s, 1))
        self.branches.append(nn.Sequential(pool, unit(cin, row.proj, 1)) if row.proj else pool)
        self.out_channels = row.n1x1 + row.n3x3 + row.nwide + (row.proj or cin)

    def forward(self, x):
        return torch.cat([b(x) for b in self.branches], 1)


def local_response_norm() -> nn.LocalResponseNorm:
    return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)  # GoogLeNet's (Caffe) settings


class InceptionNet(nn.Sequential):
    FAMILY = ""  # the model config's name, for error messages
    LAYOUT: tuple = ()
    DOUBLE_3X3 = True
    SEPARABLE_STEM = True

    def __init__(self, in_shape, num_classes: int, norm: Norm, act: str, dropout: float, init_scale: float,
                 stem: str, width_mult: float, lrn: bool):
        require_images(in_shape, self.FAMILY)
        if stem not in STEMS:
            raise ConfigError(f"unknown model.stem '{stem}': choose one of {', '.join(STEMS)}")
        if width_mult <= 0:
            raise ConfigError(f"model.width_mult={width_mult}: set a positive channel multiplier")
        if stem == "auto":
            size = min(in_shape[1:])
            stem = "imagenet" if size >= 112 else "cifar" if size >= 16 else "digits"

        def width(c):  # multiples of 8, so that norm groups of 8 always divide
            return max(8, round(c * width_mult / 8) * 8) if c else 0

        layers = OrderedDict(stem=self._stem(in_shape[0], stem, width(64), width(192), norm, act, lrn))
        cin = width(192)
        for i, row in enumerate(self.LAYOUT):
            if row is None:
                layers[f"pool{i}"] = nn.MaxPool2d(3, 2, 1)
                continue
            row = row._replace(**{f: width(getattr(row, f)) for f in Row._fields[1:8] if f != "pool"})
            layers[f"inception_{row.name}"] = module = InceptionModule(cin, row, self.DOUBLE_3X3, norm, act)
            cin = module.out_channels
        layers["pool"] = nn.AdaptiveAvgPool2d(1)
        layers["flatten"] = nn.Flatten()
        if dropout > 0:
            layers["dropout"] = nn.Dropout(dropout)
        layers["fc"] = nn.Linear(cin, num_classes)
        super().__init__(layers)
        init_weights(self, init_scale)

    def _stem(self, cin, stem, c64, c192, norm, act, lrn):
        """imagenet: Fig. 5's conv 7x7/2, max pool 3x3/2, conv 1x1 + 3x3, max pool 3x3/2 (224 -> 28);
        cifar: the same without the four downsamplings, a 3x3 first conv (32 stays 32);
        digits: one 3x3 conv (8 stays 8). LRN, where on, follows the first and the last conv as in GoogLeNet."""
        if stem == "digits":
            return nn.Sequential(conv_norm_act(cin, c192, 3, norm, act), *([local_response_norm()] if lrn else []))
        if stem == "cifar":
            first = [conv_norm_act(cin, c64, 3, norm, act)]
        elif self.SEPARABLE_STEM:  # depthwise 7x7/2 with depth multiplier 8, then pointwise to 64
            first = [nn.Conv2d(cin, cin * 8, 7, 2, 3, groups=cin, bias=False),
                     conv_norm_act(cin * 8, c64, 1, norm, act), nn.MaxPool2d(3, 2, 1)]
        else:
            first = [conv_norm_act(cin, c64, 7, norm, act, stride=2), nn.MaxPool2d(3, 2, 1)]
        layers = first + [local_response_norm()] * lrn + [conv_norm_act(c64, c64, 1, norm, act),
                                                          conv_norm_act(c64, c192, 3, norm, act)]
        layers += [local_response_norm()] * lrn + [nn.MaxPool2d(3, 2, 1)] * (stem == "imagenet")
        return nn.Sequential(*layers)


class BNInception(InceptionNet):
    """BN-Inception as Fig. 5: double 3x3 instead of 5x5, avg/max pooling mix, stride-2 modules 3c and 4e,
    separable first conv. With model.norm=none, lrn=true, dropout=0.4 it is the paper's Inception baseline
    of section 4.2.2 ("the network described at the beginning of section 4.2", before the 4.2.1 changes);
    act=sigmoid gives BN-x5-Sigmoid."""

    FAMILY = "inception_bn"
    LAYOUT = BN_INCEPTION

    def __init__(self, in_shape, num_classes: int, norm: Norm, act: str = "relu", dropout: float = 0.0,
                 init_scale: float = 1.0, stem: str = "auto", width_mult: float = 1.0, lrn: bool = False):
        super().__init__(in_shape, num_classes, norm, act, dropout, init_scale, stem, width_mult, lrn)


class GoogLeNet(InceptionNet):
    """The GoogLeNet layout (5x5 branches, max-pool projections, pooling between stages), with LRN and 40%
    dropout on by default as in Szegedy et al. 2014; no auxiliary classifiers."""

    FAMILY = "inception"
    LAYOUT = GOOGLENET
    DOUBLE_3X3 = False
    SEPARABLE_STEM = False

    def __init__(self, in_shape, num_classes: int, norm: Norm, act: str = "relu", dropout: float = 0.4,
                 init_scale: float = 1.0, stem: str = "auto", width_mult: float = 1.0, lrn: bool = True):
        super().__init__(in_shape, num_classes, norm, act, dropout, init_scale, stem, width_mult, lrn)
