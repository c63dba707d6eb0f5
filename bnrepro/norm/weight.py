"""Weight normalization (Salimans & Kingma 2016) and mean-only BN. Weight normalization is not a layer of its
own but a reparameterization of the layer before the norm, w = g v / ||v||: `wn` and `wn_mean_only_bn` build a
per-channel bias or a mean-only BN as their layer, and `Norm.finish(model)` (build_model calls it)
reparameterizes the conv or linear layer that feeds each of those."""
from __future__ import annotations

import torch
from torch import nn

from bnrepro import ConfigError
from bnrepro.norm.batch import AnyDimBatchNorm
from bnrepro.norm.pairs import norm_inputs
from bnrepro.norm.registry import register_norm


class MeanOnlyBatchNorm(AnyDimBatchNorm):
    """Mean-only BN (Salimans & Kingma 2016, section 3): y = x - mu_B + beta, the batch mean per channel in
    training (the gradient flows through it, as in BN), the running mean at inference, a learned shift beta and
    no division by a standard deviation and no scale (with weight normalization, g is the scale).

    It keeps BN's buffers so that running statistics, precise BN, batch-statistics evaluation and folding treat
    it as a BN: running_var stays 1, eps is 0 and `weight` is a buffer of ones (not a parameter), so BN's
    inference map (x - running_mean) * weight / sqrt(running_var + eps) + beta is exactly this layer's."""
    scale_invariant = False  # no division by a standard deviation

    def __init__(self, num_features: int, momentum: float = 0.1):
        super().__init__(num_features, eps=0.0, momentum=momentum, affine=False, track_running_stats=True)
        del self._parameters["weight"]
        self.register_buffer("weight", torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x):
        self._check_input_dim(x)
        if self._uses_batch_stats():
            mean = x.mean([0] + list(range(2, x.dim())))
            if self._updates_running_stats():
                with torch.no_grad():
                    self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), self._average_factor())
        else:
            mean = self.running_mean
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x - mean.reshape(shape) + self.bias.reshape(shape)


class ChannelBias(nn.Module):
    """A learned per-channel shift, y = x + b: `wn`'s layer. The layer before a norm has no bias of its own (the
    models drop it wherever a norm follows), so weight normalization alone gives that bias back here."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x):
        return x + self.bias.reshape((1, -1) + (1,) * (x.dim() - 2))


def weight_normalize(model: nn.Module, name: str) -> nn.Module:
    """wn's and wn_mean_only_bn's `finish`: torch's weight normalization, w = g v / ||v|| with g and v per output
    channel, on the conv or linear layer that feeds each of their layers. g starts at ||v||, so the function at
    initialization is the model's own (Salimans & Kingma's data-dependent init is not used: every arm starts
    from the same function)."""
    from torch.nn.utils.parametrizations import weight_norm
    pairs = norm_inputs(model, lambda m: isinstance(m, (ChannelBias, MeanOnlyBatchNorm)))
    if not pairs:
        raise ConfigError(f"model.norm={name}: the model has no layer before a norm to reparameterize")
    for _, layer, _ in pairs:
        weight_norm(layer, name="weight", dim=0)
    return model


@register_norm("mean_only_bn", options=("norm_momentum",), batch_stats=True)
def mean_only_bn(norm, channels: int, dim: int) -> nn.Module:
    return MeanOnlyBatchNorm(channels, momentum=norm.norm_momentum)


@register_norm("wn_mean_only_bn", options=("norm_momentum",), batch_stats=True, finish=weight_normalize)
def wn_mean_only_bn(norm, channels: int, dim: int) -> nn.Module:
    return MeanOnlyBatchNorm(channels, momentum=norm.norm_momentum)


@register_norm("wn", finish=weight_normalize)
def wn(norm, channels: int, dim: int) -> nn.Module:
    return ChannelBias(channels)
