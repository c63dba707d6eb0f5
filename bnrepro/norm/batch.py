"""The BN family's common base (any input rank, the running-statistics rules) and plain, frozen and
global BN."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from bnrepro import ConfigError
from bnrepro.norm.registry import register_norm


def sub_batches(x: torch.Tensor, ghost_batch: int) -> tuple[int, int, int]:
    """(k, g, m): k normalization batches of g examples each, m values per channel behind each statistic."""
    n = x.shape[0]
    g = ghost_batch or n
    if n % g:
        raise ConfigError(f"a batch of {n} examples does not split into ghost batches of model.ghost_batch={g}: "
                          f"make trainer.batch_size (and the eval batch size) a multiple of it")
    m = x[0, 0].numel() * g
    if m < 2:
        raise ConfigError(f"model.ghost_batch={g} leaves one value per channel to normalize over: "
                          f"set model.ghost_batch >= 2")
    return n // g, g, m


def sub_batch_moments(x: torch.Tensor, ghost_batch: int = 0):
    """Per-channel mean and biased variance, shape (k, C), of each normalization batch of `ghost_batch`
    examples (0: the whole batch), and m, the number of values per channel behind each statistic."""
    k, g, m = sub_batches(x, ghost_batch)
    var, mean = torch.var_mean(x.reshape(k, g, x.shape[1], -1), dim=(1, 3), correction=0)
    return mean, var, m


class AnyDimBatchNorm(_BatchNorm):
    """A `_BatchNorm` that takes (N, C), (N, C, L) and (N, C, H, W) inputs alike."""

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected a (N, C, ...) input, got shape {tuple(x.shape)}")

    def _average_factor(self) -> float:
        """The weight of the new batch in the running statistics, as torch's BN computes it."""
        self.num_batches_tracked.add_(1)
        return 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum

    def _eval_forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)

    def _uses_batch_stats(self) -> bool:
        # as torch: batch statistics in training, and in eval when the running buffers were taken away
        # (see bnrepro.inference.batch_statistics)
        return self.training or self.running_mean is None

    def _updates_running_stats(self) -> bool:
        return self.training and self.track_running_stats and self.running_mean is not None


class FrozenBatchNorm(AnyDimBatchNorm):
    """BN that always normalizes with its running statistics, which it never updates; gamma and beta still
    train. From scratch the statistics stay (0, 1) and the layer is a learned per-channel affine map: the
    control with BN's parameters but no normalization. timm's and torchvision's FrozenBatchNorm2d freeze
    gamma and beta as well and are 2d only, hence this class."""
    scale_invariant = False  # no batch statistics (bnrepro.norm.pairs.scale_invariant)
    batch_statistics = False  # a batch of one trains (bnrepro.norm.validate_batch)

    def forward(self, x):
        self._check_input_dim(x)
        return self._eval_forward(x)


class GlobalBatchNorm(AnyDimBatchNorm):
    """BN over the global batch of all processes for CPU (gloo) runs, where torch's SyncBatchNorm refuses
    CPU tensors. The collectives are autograd-aware, so gradients flow through the global statistics."""

    def forward(self, x):
        self._check_input_dim(x)
        if not self._uses_batch_stats():
            return self._eval_forward(x)
        if not self.training:  # batch statistics at eval time stay local, as torch's SyncBatchNorm does
            return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        from torch.distributed.nn.functional import all_reduce

        dims = [0] + list(range(2, x.dim()))
        count = torch.full((1,), x.numel() // x.shape[1], dtype=x.dtype, device=x.device)
        total = all_reduce(torch.cat([x.sum(dims), count]))  # two passes: no E[x^2] - E[x]^2 cancellation
        m = total[-1]
        mean = total[:-1] / m
        shape = (1, -1) + (1,) * (x.dim() - 2)
        centered = x - mean.reshape(shape)
        var = all_reduce(centered.square().sum(dims)) / m
        if self._updates_running_stats():
            with torch.no_grad():
                factor = self._average_factor()
                self.running_mean.lerp_(mean, factor)
                self.running_var.lerp_(var * m / (m - 1), factor)
        scale = self.weight * torch.rsqrt(var + self.eps)
        return centered * scale.reshape(shape) + self.bias.reshape(shape)


@register_norm("bn", options=("norm_momentum", "norm_eps", "norm_sync"), batch_stats=True, label="BN",
               color="#1f77b4", about="batch normalization")
def bn(norm, channels: int, dim: int) -> nn.Module:
    return (nn.BatchNorm1d if dim == 1 else nn.BatchNorm2d)(channels, eps=norm.norm_eps, momentum=norm.norm_momentum)


@register_norm("frozen_bn", options=("norm_momentum", "norm_eps"))
def frozen_bn(norm, channels: int, dim: int) -> nn.Module:
    return FrozenBatchNorm(channels, eps=norm.norm_eps, momentum=norm.norm_momentum)
