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
    initialization is the model's own; with model.wn_init=data (the default) the training loop then calls
    `data_dependent_init` on a training batch before the first step."""
    from torch.nn.utils.parametrizations import weight_norm
    pairs = norm_inputs(model, lambda m: isinstance(m, (ChannelBias, MeanOnlyBatchNorm)))
    if not pairs:
        raise ConfigError(f"model.norm={name}: the model has no layer before a norm to reparameterize")
    for _, layer, _ in pairs:
        weight_norm(layer, name="weight", dim=0)
    return model


def _wn_pairs(model: nn.Module) -> list[tuple[nn.Module, nn.Module]]:
    """(layer, norm) for every weight-normalized layer and the wn / wn_mean_only_bn layer it feeds, in order."""
    return [(layer, m) for _, layer, m in norm_inputs(model, lambda m: isinstance(m, (ChannelBias, MeanOnlyBatchNorm)))
            if hasattr(layer, "parametrizations")]


@torch.no_grad()
def data_dependent_init(model: nn.Module, x: torch.Tensor) -> None:
    """Salimans & Kingma 2016, section 3 (data-dependent initialization): on one minibatch `x`, layer by layer in
    the order of the data flow, each weight-normalized layer's pre-activation t = v.u / ||v|| (u its input) gets
    per channel mean mu[t] and standard deviation sigma[t]; then g = 1 / sigma[t] and b = -mu[t] / sigma[t], so
    that y = g t' + b (t' = v.u/||v||) has mean 0 and variance 1 on that batch. The layers after are initialized
    on the outputs of the layers already set, as in the paper. b is the wn layer's bias (ChannelBias); after
    mean-only BN the batch mean is removed anyway, so its shift stays 0 (its output then has mean 0, variance 1
    on the batch too). Buffers (mean-only BN's running mean) and the modes are put back: the init changes only
    g and b. The caller draws `x` without touching the training loader, so the data order is unchanged."""
    pairs = _wn_pairs(model)
    buffers = {k: b.clone() for k, b in model.named_buffers()}
    was = {m: m.training for m in model.modules()}
    model.train()
    try:
        for layer, norm in pairs:
            seen = {}
            hook = layer.register_forward_hook(lambda mod, inp, out: seen.setdefault("t", out.detach()))
            try:
                model(x)
            finally:
                hook.remove()
            t = seen["t"].float()
            dims = [0] + list(range(2, t.dim()))
            g = layer.parametrizations.weight.original0  # (out, 1, ...): torch's weight_norm magnitude
            # the layer's output is g t' (+ its own bias, absent where a norm follows): divide out the current g
            # to get t' = v.u/||v||, the pre-activation the paper's formula reads
            g_flat = g.reshape(-1).float()
            bias = layer.bias.float() if getattr(layer, "bias", None) is not None else torch.zeros_like(g_flat)
            t0 = (t - bias.reshape((1, -1) + (1,) * (t.dim() - 2))) / g_flat.reshape((1, -1) + (1,) * (t.dim() - 2))
            mu, sigma = t0.mean(dims), t0.var(dims, unbiased=False).clamp_min(1e-12).sqrt()
            g.copy_((1.0 / sigma).reshape(g.shape).to(g.dtype))
            b = (-mu / sigma)
            if getattr(layer, "bias", None) is not None:
                layer.bias.copy_(b.to(layer.bias.dtype))
                if isinstance(norm, ChannelBias):
                    norm.bias.zero_()
            elif isinstance(norm, ChannelBias):
                norm.bias.copy_(b.to(norm.bias.dtype))
            else:  # mean-only BN subtracts the batch mean: its shift is the paper's b after centring, 0
                norm.bias.zero_()
    finally:
        for k, b in model.named_buffers():
            b.copy_(buffers[k])
        for m, flag in was.items():
            m.train(flag)


def needs_data_init(model: nn.Module, norm) -> bool:
    """Whether the training loop should call `data_dependent_init` (model.wn_init=data on a weight-normalized
    model)."""
    return norm.weight_norm and getattr(norm, "wn_init", "norm") == "data" and bool(_wn_pairs(model))


@register_norm("mean_only_bn", options=("norm_momentum",), batch_stats=True)
def mean_only_bn(norm, channels: int, dim: int) -> nn.Module:
    return MeanOnlyBatchNorm(channels, momentum=norm.norm_momentum)


@register_norm("wn_mean_only_bn", options=("norm_momentum", "wn_init"), batch_stats=True, finish=weight_normalize)
def wn_mean_only_bn(norm, channels: int, dim: int) -> nn.Module:
    return MeanOnlyBatchNorm(channels, momentum=norm.norm_momentum)


@register_norm("wn", options=("wn_init",), finish=weight_normalize)
def wn(norm, channels: int, dim: int) -> nn.Module:
    return ChannelBias(channels)
