"""BN over sub-batches of the training batch (ghost BN) and Batch Renormalization (Ioffe 2017), with the
latter's clipping schedule."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bnrepro import ConfigError
from bnrepro.norm.batch import AnyDimBatchNorm, sub_batches
from bnrepro.norm.registry import register_norm


class GhostBatchNorm(AnyDimBatchNorm):
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
        y, mean, var = self._normalizesub_batches(x, ghost, self.weight.repeat(k), self.bias.repeat(k))
        if self._updates_running_stats():
            self._update_running(mean, var)
        return y

    def _normalizesub_batches(self, x, ghost: int, weight, bias):
        """torch's fused BN run on the sub-batches laid side by side as channels, (g, k*C, rest): returns the
        output and each sub-batch's mean and unbiased variance, (k, C), which the kernel writes into the
        buffers it is given when their momentum is 1."""
        k, g, _ = sub_batches(x, ghost)
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


def ramp(step: float, start: float, end: float) -> float:
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
    scale_invariant = False  # r and d use the running statistics, which do not scale

    def __init__(self, num_features: int, ghost_batch: int = 0, r_max: float = 3.0, d_max: float = 5.0,
                 hold: int = 0, r_max_at: int = 0, d_max_at: int = 0, **kw):
        super().__init__(num_features, ghost_batch, **kw)
        self.r_max, self.d_max = r_max, d_max
        self.hold, self.r_max_at, self.d_max_at = hold, r_max_at, d_max_at

    def limits(self) -> tuple[float, float]:
        """The current (r_max, d_max) of the schedule."""
        step = float(self.num_batches_tracked)
        return (1.0 + (self.r_max - 1.0) * ramp(step, self.hold, self.r_max_at),
                self.d_max * ramp(step, self.hold, self.d_max_at))

    def _batch_forward(self, x, ghost: int):
        x_hat, mean, var = self._normalizesub_batches(x, ghost, None, None)
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


@register_norm("ghost_bn", options=("ghost_batch", "norm_momentum", "norm_eps"), batch_stats=True,
               label="BN (ghost)", color="#1f77b4", about="BN over ghost batches")
def ghost_bn(norm, channels: int, dim: int) -> nn.Module:
    return GhostBatchNorm(channels, norm.ghost_batch, eps=norm.norm_eps, momentum=norm.norm_momentum)


@register_norm("brn", options=("ghost_batch", "brn_rmax", "brn_dmax", "brn_hold", "brn_rmax_at", "brn_dmax_at",
                               "brn_warmup", "norm_momentum", "norm_eps"),
               batch_stats=True, label="Batch Renorm", color="#d62728", about="Batch Renormalization")
def brn(norm, channels: int, dim: int) -> nn.Module:
    schedule = brn_schedule(norm.brn_hold, norm.brn_rmax_at, norm.brn_dmax_at, norm.brn_warmup)
    return BatchRenorm(channels, norm.ghost_batch, norm.brn_rmax, norm.brn_dmax, *schedule, eps=norm.norm_eps,
                       momentum=norm.norm_momentum)
