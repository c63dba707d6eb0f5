"""The norm factory: every model builds its normalization layers through `Norm`, named by `model.norm`.

Every layer that normalizes with batch statistics subclasses torch's `_BatchNorm`, so running statistics,
precise BN, folding and SyncBN conversion treat them all alike. Every layer works on 1d (N, C) and conv
(N, C, H, W) inputs.

Weight normalization (Salimans & Kingma 2016) is not a layer of its own but a reparameterization of the layer
before the norm, w = g v / ||v||: `wn` and `wn_mean_only_bn` build a per-channel bias or a mean-only BN as
their layer, and `Norm.finish(model)` (build_model calls it) reparameterizes the conv or linear layer that
feeds each of those.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from bnrepro import ConfigError

NORMS = ("bn", "none", "gn", "ln", "in", "ghost_bn", "brn", "noisy_bn", "frozen_bn", "wn", "mean_only_bn",
         "wn_mean_only_bn")
WEIGHT_NORMS = ("wn", "wn_mean_only_bn")  # the norms that reparameterize the layer before theirs


def _sub_batches(x: torch.Tensor, ghost_batch: int) -> tuple[int, int, int]:
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
    k, g, m = _sub_batches(x, ghost_batch)
    var, mean = torch.var_mean(x.reshape(k, g, x.shape[1], -1), dim=(1, 3), correction=0)
    return mean, var, m


class _AnyDimBatchNorm(_BatchNorm):
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


class GhostBatchNorm(_AnyDimBatchNorm):
    """BN whose training statistics come from sub-batches of `ghost_batch` examples (0: the whole batch).

    The running mean is the average of the sub-batch means, the running variance that of their unbiased
    (m/(m-1)) variances: the paper's Algorithm 2 with the sub-batch as the mini-batch."""

    def __init__(self, num_features: int, ghost_batch: int = 0, **kw):
        super().__init__(num_features, **kw)
        self.ghost_batch = ghost_batch

    def forward(self, x):
        self._check_input_dim(x)
        if not self._uses_batch_stats():
            return self._eval_forward(x)
        if self.training:
            return self._batch_forward(x, self.ghost_batch)
        # batch statistics at eval time (bnrepro.inference.batch_statistics): sub-batches as in training, and
        # the test set's last, smaller batch normalizes what does not fill a sub-batch on its own
        n, g = x.shape[0], self.ghost_batch or x.shape[0]
        cut = n - n % g
        parts = [(x[:cut], g)] * (cut > 0) + [(x[cut:], n - cut)] * (cut < n)
        return torch.cat([self._batch_forward(part, ghost) for part, ghost in parts])

    def _batch_forward(self, x, ghost: int):
        if ghost in (0, x.shape[0]):
            return super().forward(x)
        k = x.shape[0] // ghost
        y, mean, var = self._normalize_sub_batches(x, ghost, self.weight.repeat(k), self.bias.repeat(k))
        if self._updates_running_stats():
            self._update_running(mean, var)
        return y

    def _normalize_sub_batches(self, x, ghost: int, weight, bias):
        """torch's fused BN run on the sub-batches laid side by side as channels, (g, k*C, rest): returns the
        output and each sub-batch's mean and unbiased variance, (k, C), which the kernel writes into the
        buffers it is given when their momentum is 1."""
        k, g, _ = _sub_batches(x, ghost)
        c = x.shape[1]
        side_by_side = x.reshape(k, g, c, -1).transpose(0, 1).reshape(g, k * c, -1)
        # statistics in fp32 at least, as torch's BN keeps them under autocast: the kernels refuse bf16 statistics
        # beside fp32 weights (both CPU and CUDA; every ghost-BN arm of C7 failed under bf16 before)
        stats = torch.promote_types(x.dtype, torch.float32)
        mean = torch.zeros(k * c, device=x.device, dtype=stats)
        var = torch.ones(k * c, device=x.device, dtype=stats)
        y = F.batch_norm(side_by_side, mean, var, weight, bias, True, 1.0, self.eps)
        y = y.reshape(g, k, c, -1).transpose(0, 1).reshape(x.shape)
        return y, mean.view(k, c), var.view(k, c)

    @torch.no_grad()
    def _update_running(self, mean, unbiased_var):
        factor = self._average_factor()
        self.running_mean.lerp_(mean.mean(0), factor)
        self.running_var.lerp_(unbiased_var.mean(0), factor)


def _ramp(step: float, start: float, end: float) -> float:
    """0 up to `start`, then linearly to 1 at `end`, 1 after (a step function at `start` when end == start).
    An `end` before `start` would return 1 from `end`, inside the hold: check_brn_schedule refuses it."""
    if step >= end:
        return 1.0
    return 0.0 if step <= start else (step - start) / (end - start)


class BatchRenorm(GhostBatchNorm):
    """Batch Renormalization (Ioffe 2017): x_hat = (x - mu_B) / sigma_B * r + d with r = sigma_B / sigma and
    d = (mu_B - mu) / sigma clipped to [1/r_max, r_max] and [-d_max, d_max] and treated as constants.
    Honors `ghost_batch` so it can be studied at small normalization batches.

    The clipping limits follow the paper's schedule (section 4.1): plain BN (r_max = 1, d_max = 0) for the
    first `hold` training steps, "after which these were gradually relaxed to reach r_max = 3 at 40k steps, and
    d_max = 5 at 25k steps": r_max ramps linearly from 1 at `hold` to `r_max` at step `r_max_at`, d_max from 0
    at `hold` to `d_max` at `d_max_at` (the paper says "gradually"; linear is our choice). Steps are counted by
    `num_batches_tracked`, so they survive a checkpoint. The class defaults (all 0) apply the full limits from
    the first step; `Norm` passes the paper's schedule (model.brn_hold, brn_rmax_at, brn_dmax_at)."""

    def __init__(self, num_features: int, ghost_batch: int = 0, r_max: float = 3.0, d_max: float = 5.0,
                 hold: int = 0, r_max_at: int = 0, d_max_at: int = 0, **kw):
        super().__init__(num_features, ghost_batch, **kw)
        self.r_max, self.d_max = r_max, d_max
        self.hold, self.r_max_at, self.d_max_at = hold, r_max_at, d_max_at

    def limits(self) -> tuple[float, float]:
        """The current (r_max, d_max) of the schedule."""
        step = float(self.num_batches_tracked)
        return (1.0 + (self.r_max - 1.0) * _ramp(step, self.hold, self.r_max_at),
                self.d_max * _ramp(step, self.hold, self.d_max_at))

    def _batch_forward(self, x, ghost: int):
        x_hat, mean, var = self._normalize_sub_batches(x, ghost, None, None)
        k, c = mean.shape
        scale, shift = self.weight.expand(k, c), self.bias.expand(k, c)
        if self._updates_running_stats():
            with torch.no_grad():
                r_max, d_max = self.limits()
                m = x[:, 0].numel() // k
                inv_run_std = torch.rsqrt(self.running_var + self.eps)
                r = ((var * ((m - 1) / m) + self.eps).sqrt() * inv_run_std).clamp(1 / r_max, r_max)
                d = ((mean - self.running_mean) * inv_run_std).clamp(-d_max, d_max)
            scale, shift = scale * r, shift + self.weight * d
            self._update_running(mean, var)
        per_sub_batch = x_hat.reshape(k, -1, c, x[0, 0].numel())
        y = per_sub_batch * scale[:, None, :, None] + shift[:, None, :, None]  # fp32 parameters promote a bf16 x_hat
        return y.reshape(x.shape).to(x.dtype)


class NoisyBatchNorm(_AnyDimBatchNorm):
    """Santurkar et al.'s "noisy BN": BN followed, in training only, by a random scale and shift per example
    and channel, y * (1 + s * z1) + (mu + s * z2) with z ~ N(0, 1), whose distribution itself changes at every
    step: per channel mu ~ U(-noise_mean, noise_mean) and s ~ U(0, noise_std), drawn at each forward."""

    def __init__(self, num_features: int, noise_mean: float = 0.5, noise_std: float = 0.5, **kw):
        super().__init__(num_features, **kw)
        self.noise_mean, self.noise_std = noise_mean, noise_std

    def forward(self, x):
        y = super().forward(x)
        if not self.training:
            return y
        per_channel = (1, x.shape[1]) + (1,) * (x.dim() - 2)
        per_example = (x.shape[0],) + per_channel[1:]
        mu = torch.empty(per_channel, device=x.device, dtype=y.dtype).uniform_(-self.noise_mean, self.noise_mean)
        s = torch.empty(per_channel, device=x.device, dtype=y.dtype).uniform_(0.0, self.noise_std)
        z = torch.randn((2,) + per_example, device=x.device, dtype=y.dtype)
        return y * (1 + s * z[0]) + (mu + s * z[1])


class FrozenBatchNorm(_AnyDimBatchNorm):
    """BN that always normalizes with its running statistics, which it never updates; gamma and beta still
    train. From scratch the statistics stay (0, 1) and the layer is a learned per-channel affine map: the
    control with BN's parameters but no normalization. timm's and torchvision's FrozenBatchNorm2d freeze
    gamma and beta as well and are 2d only, hence this class."""

    def forward(self, x):
        self._check_input_dim(x)
        return self._eval_forward(x)


class GlobalBatchNorm(_AnyDimBatchNorm):
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


class MeanOnlyBatchNorm(_AnyDimBatchNorm):
    """Mean-only BN (Salimans & Kingma 2016, section 3): y = x - mu_B + beta, the batch mean per channel in
    training (the gradient flows through it, as in BN), the running mean at inference, a learned shift beta and
    no division by a standard deviation and no scale (with weight normalization, g is the scale).

    It keeps BN's buffers so that running statistics, precise BN, batch-statistics evaluation and folding treat
    it as a BN: running_var stays 1, eps is 0 and `weight` is a buffer of ones (not a parameter), so BN's
    inference map (x - running_mean) * weight / sqrt(running_var + eps) + beta is exactly this layer's."""

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


FEEDING = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)  # the layers a norm can follow


def norm_inputs(model: nn.Module, is_norm) -> list[tuple[str, nn.Module, nn.Module]]:
    """(name, layer, norm) for every module `is_norm` accepts and the conv or linear layer that feeds it: the
    last such layer registered before it, which must have the norm's channels. Every model family registers a
    layer just before its norm (nn.Sequential(conv, norm), timm's conv1/bn1); tests/test_decouple.py checks the
    pairs against the data flow of a forward pass for each family."""
    pairs, last = [], None
    for name, m in model.named_modules():
        if isinstance(m, FEEDING):
            last = (name, m)
        elif is_norm(m):
            if last is None:
                raise ValueError(f"{type(m).__name__} at {name or 'the top'} has no conv or linear layer before it")
            layer_name, layer = last
            out = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
            if out != m.num_features:
                raise ValueError(f"{name} normalizes {m.num_features} channels but {layer_name}, the layer before "
                                 f"it, has {out}")
            pairs.append((layer_name, layer, m))
            last = None
    return pairs


def scale_invariant(m: nn.Module) -> bool:
    """A norm after which the layer before is scale-invariant in training: BN((aW)u) = BN(Wu) (eps aside). Not
    brn (its r and d use the running statistics, which do not scale), frozen_bn (no batch statistics) or
    mean_only_bn (no division)."""
    return isinstance(m, _BatchNorm) and not isinstance(m, (BatchRenorm, FrozenBatchNorm, MeanOnlyBatchNorm))


IN_ON_FEATURES = ("model.norm=in normalizes each channel over its spatial positions, which a fully connected "
                  "layer has none of: use model.norm=ln or gn")


class SequenceInstanceNorm(nn.InstanceNorm1d):
    """IN for (N, C, L) sequences. torch's InstanceNorm1d would read an (N, C) input as one unbatched (C, L)
    example and quietly normalize across the batch; refuse that instead."""

    def forward(self, x):
        if x.dim() != 3:
            raise ConfigError(IN_ON_FEATURES)
        return super().forward(x)


def brn_schedule(hold: int, r_max_at: int, d_max_at: int, warmup: int | None) -> tuple[int, int, int]:
    """Batch Renorm's (hold, r_max_at, d_max_at) in training steps. With model.brn_warmup set, the paper's
    5k/40k/25k shape is kept and scaled so that r_max arrives at step brn_warmup: a short run (cpu scale)
    gets the same hold-then-relax sequence in proportion to its length rather than a schedule it never
    reaches."""
    if warmup is None:
        return hold, r_max_at, d_max_at
    scale = warmup / max(r_max_at, 1)
    return round(hold * scale), warmup, round(d_max_at * scale)


def check_brn_schedule(hold: int, r_max_at: int, d_max_at: int, warmup: int | None) -> None:
    """ConfigError unless r_max and d_max both start relaxing at the end of the hold: a limit that reaches its
    full value before `hold` (r_max_at or d_max_at < hold) would apply it in the middle of the plain-BN phase.
    Checked on the schedule that runs, i.e. after brn_warmup's scaling. The schema (at the door) and Norm
    both call it."""
    if min(hold, r_max_at, d_max_at) < 0 or (warmup is not None and warmup < 0):
        raise ConfigError(f"model.brn_hold={hold}, brn_rmax_at={r_max_at}, brn_dmax_at={d_max_at}, brn_warmup="
                          f"{warmup}: set steps >= 0 (brn_warmup: null for the absolute schedule)")
    h, r, d = brn_schedule(hold, r_max_at, d_max_at, warmup)
    early = [f"model.{key}={value}" for key, value, at in (("brn_rmax_at", r_max_at, r), ("brn_dmax_at", d_max_at, d))
             if at < h]
    if early:
        scaled = "" if warmup is None else \
            f" (as scaled by model.brn_warmup={warmup}: hold to step {h}, r_max at {r}, d_max at {d})"
        raise ConfigError(f"{' and '.join(early)} {'are' if len(early) > 1 else 'is'} before the end of "
                          f"model.brn_hold={hold}{scaled}, so a clipping limit reaches its full value inside the "
                          "plain-BN hold; set model.brn_rmax_at and model.brn_dmax_at >= model.brn_hold (the paper: "
                          "hold 5000, r_max at 40000, d_max at 25000)")


@dataclass(frozen=True)
class Norm:
    """Builds the normalization layer for `channels` channels. `dim` follows torch's BatchNorm1d/2d: 1 takes
    (N, C) features (MLP) and (N, C, L) sequences (1-D conv nets), 2 takes (N, C, H, W) feature maps.

    `ghost_batch` is honored by ghost_bn and brn and ignored by the other norms, so one sweep can cross norms
    with normalization batch sizes."""

    kind: str = "bn"
    momentum: float = 0.1
    eps: float = 1e-5
    groups: int = 32
    ghost_batch: int = 0
    brn_rmax: float = 3.0
    brn_dmax: float = 5.0
    brn_hold: int = 5000          # Batch Renorm paper: plain BN for the first 5k steps,
    brn_rmax_at: int = 40000      # r_max reaches brn_rmax at 40k steps,
    brn_dmax_at: int = 25000      # d_max reaches brn_dmax at 25k steps
    brn_warmup: int | None = None  # set: the schedule above scaled so that it ends at this step (short runs)
    noise_mean: float = 0.5
    noise_std: float = 0.5

    def __post_init__(self):
        if self.kind not in NORMS:
            raise ConfigError(f"unknown norm '{self.kind}': set model.norm to one of {', '.join(NORMS)}")
        if self.groups < 1:
            raise ConfigError(f"model.norm_groups={self.groups}: set it to a positive divisor of the channels")
        if self.ghost_batch < 0:
            raise ConfigError(f"model.ghost_batch={self.ghost_batch}: set it to 0 (whole batch) or a positive size")
        if self.brn_rmax < 1 or self.brn_dmax < 0:
            raise ConfigError(f"model.brn_rmax={self.brn_rmax}, model.brn_dmax={self.brn_dmax}: "
                              f"set model.brn_rmax >= 1 and model.brn_dmax >= 0")
        check_brn_schedule(self.brn_hold, self.brn_rmax_at, self.brn_dmax_at, self.brn_warmup)

    def brn_schedule(self) -> tuple[int, int, int]:
        """Batch Renorm's (hold, r_max_at, d_max_at) in training steps (see `brn_schedule`)."""
        return brn_schedule(self.brn_hold, self.brn_rmax_at, self.brn_dmax_at, self.brn_warmup)

    @property
    def weight_norm(self) -> bool:
        """True for wn and wn_mean_only_bn: `finish` reparameterizes the layer before each norm layer."""
        return self.kind in WEIGHT_NORMS

    def finish(self, model: nn.Module) -> nn.Module:
        """What the norm does outside its own layers, applied once the model is built (and initialized): wn and
        wn_mean_only_bn put torch's weight normalization, w = g v / ||v|| with g and v per output channel, on the
        conv or linear layer that feeds each of their layers. g starts at ||v||, so the function at
        initialization is the model's own (Salimans & Kingma's data-dependent init is not used: every arm starts
        from the same function). The other norms leave the model as it is."""
        if not self.weight_norm:
            return model
        from torch.nn.utils.parametrizations import weight_norm
        pairs = norm_inputs(model, lambda m: isinstance(m, (ChannelBias, MeanOnlyBatchNorm)))
        if not pairs:
            raise ConfigError(f"model.norm={self.kind}: the model has no layer before a norm to reparameterize")
        for _, layer, _ in pairs:
            weight_norm(layer, name="weight", dim=0)
        return model

    @property
    def enabled(self) -> bool:
        """False for `none`: the model then adds no norm module and keeps the layer biases."""
        return self.kind != "none"

    def __call__(self, channels: int, dim: int) -> nn.Module:
        if not self.enabled:
            raise ValueError("Norm('none') builds no layer: check `norm.enabled` first")
        if dim not in (1, 2):
            raise ValueError(f"dim is 1 (features or sequences) or 2 (feature maps), got {dim}")
        bn = dict(eps=self.eps, momentum=self.momentum)
        if self.kind == "bn":
            return (nn.BatchNorm1d if dim == 1 else nn.BatchNorm2d)(channels, **bn)
        if self.kind == "ghost_bn":
            return GhostBatchNorm(channels, self.ghost_batch, **bn)
        if self.kind == "brn":
            return BatchRenorm(channels, self.ghost_batch, self.brn_rmax, self.brn_dmax, *self.brn_schedule(), **bn)
        if self.kind == "noisy_bn":
            return NoisyBatchNorm(channels, self.noise_mean, self.noise_std, **bn)
        if self.kind == "frozen_bn":
            return FrozenBatchNorm(channels, **bn)
        if self.kind in ("mean_only_bn", "wn_mean_only_bn"):
            return MeanOnlyBatchNorm(channels, momentum=self.momentum)
        if self.kind == "wn":
            return ChannelBias(channels)
        if self.kind == "gn":
            if channels % self.groups:
                raise ConfigError(f"model.norm_groups={self.groups} does not divide a layer's {channels} channels: "
                                  f"set model.norm_groups to a divisor of every layer's width")
            return nn.GroupNorm(self.groups, channels, eps=self.eps)
        if self.kind == "ln":
            # the GN paper's LN: one group over all of an example's (C, ...) values, per-channel gamma and beta;
            # on (N, C) features the same map as nn.LayerNorm(C), and it also takes (N, C, L) sequences
            return nn.GroupNorm(1, channels, eps=self.eps)
        if dim == 1:  # "in" on sequences
            return SequenceInstanceNorm(channels, eps=self.eps, affine=True)
        return nn.InstanceNorm2d(channels, eps=self.eps, affine=True)


def _batch_stat_norms(model: nn.Module) -> list[_BatchNorm]:
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and not isinstance(m, FrozenBatchNorm)]


def validate_batch(model: nn.Module, batch_size: int) -> None:
    """Raise ConfigError when the model's norms cannot train on batches of `batch_size` examples."""
    norms = _batch_stat_norms(model)
    if norms and batch_size < 2:
        raise ConfigError("BN needs more than one example per batch: "
                          "set trainer.batch_size >= 2 or model.norm=gn|ln|none")
    for m in norms:
        ghost = getattr(m, "ghost_batch", 0)
        if ghost and batch_size % ghost:
            raise ConfigError(f"trainer.batch_size={batch_size} is not a multiple of model.ghost_batch={ghost}: "
                              f"change one of them")


def convert_sync_bn(model: nn.Module) -> nn.Module:
    """Make every plain BN layer normalize over the global batch of all processes (model.norm_sync=true):
    torch's SyncBatchNorm on CUDA, GlobalBatchNorm on the CPU. ghost_bn and brn keep their per-process
    sub-batches by design, frozen_bn and noisy_bn stay as they are. No-op outside a multi-process run."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return model
    cuda = any(p.is_cuda for p in model.parameters())
    sync_cls = nn.SyncBatchNorm if cuda else GlobalBatchNorm
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) in (nn.BatchNorm1d, nn.BatchNorm2d):
                sync = sync_cls(child.num_features, eps=child.eps, momentum=child.momentum, affine=child.affine,
                                track_running_stats=child.track_running_stats)
                sync.to(child.running_mean.device).load_state_dict(child.state_dict())
                setattr(parent, name, sync.train(child.training))
    return model
