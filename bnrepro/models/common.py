"""Pieces shared by the model families."""
from __future__ import annotations

from torch import nn

from bnrepro import ConfigError
from bnrepro.norm import Norm

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown activation '{name}': set model.act to one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


CONVS = {1: nn.Conv1d, 2: nn.Conv2d}  # by the number of spatial axes: (N, C, L) sequences, (N, C, H, W) images


def layer_bias(norm: Norm) -> bool:
    """Whether the linear or conv layer under a norm keeps its bias: only where no norm follows it directly to
    absorb it (no norm, or the norm after the nonlinearity: model.norm_position=post)."""
    return not norm.enabled or norm.position == "post"


def norm_act(norm: Norm, channels: int, dim: int, act: str) -> list[nn.Module]:
    """The norm and the nonlinearity after a linear or conv layer, in the order model.norm_position asks (C17):
    pre = norm then nonlinearity (the paper's: "immediately before the nonlinearity"), post = the reverse."""
    normed = [norm(channels, dim=dim)] if norm.enabled else []
    return normed + [activation(act)] if norm.position == "pre" else [activation(act)] + normed


def conv(cin: int, cout: int, kernel: int, stride: int, dims: int, bias: bool) -> nn.Module:
    """A same-padded conv over `dims` spatial axes."""
    return CONVS[dims](cin, cout, kernel, stride, padding=kernel // 2, bias=bias)


def conv_norm(cin: int, cout: int, kernel: int, norm: Norm, stride: int = 1, dims: int = 2) -> nn.Sequential:
    """A conv followed by the norm, with no nonlinearity after it (so at any norm_position); the conv keeps its
    bias only when there is no norm to absorb it."""
    layers = [conv(cin, cout, kernel, stride, dims, bias=not norm.enabled)]
    if norm.enabled:
        layers.append(norm(cout, dim=dims))
    return nn.Sequential(*layers)


def conv_norm_act(cin: int, cout: int, kernel: int, norm: Norm, act: str, stride: int = 1,
                  dims: int = 2) -> nn.Sequential:
    """conv -> norm -> act, or conv -> act -> norm with model.norm_position=post."""
    return nn.Sequential(conv(cin, cout, kernel, stride, dims, bias=layer_bias(norm)), *norm_act(norm, cout, dims, act))


def require_images(in_shape, family: str) -> None:
    """The 2-D-only families refuse other inputs with the fix, rather than failing inside a conv."""
    if len(in_shape) != 3:
        raise ConfigError(f"model={family} takes (C, H, W) images, got input shape {tuple(in_shape)}: for "
                          "sequences (data=mnist1d) use model=resnet_cifar (its 1-D variant) or model=mlp")


def init_weights(model: nn.Module, init_scale: float = 1.0) -> None:
    """Kaiming-normal convs in fan_in mode, which keeps the forward signal's scale through a net without norms
    (fan_out, torchvision's and timm's choice, inflates it by cout/cin at every 1x1 reduction), torch's default
    linear layers, zero biases; then every conv and linear weight times `init_scale` (model.init_scale, C6)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    scale_weights(model, init_scale)


def scale_weights(model: nn.Module, init_scale: float) -> None:
    if init_scale <= 0:
        raise ConfigError(f"model.init_scale={init_scale}: set a positive multiplier of the default init")
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            m.weight.data.mul_(init_scale)
