"""Optimizer and learning-rate schedule, built from `cfg.optim` and `cfg.schedule`.

The schedule is a torch LR scheduler stepped once per training step. Its lengths are fractions of
trainer.max_steps, so one schedule file serves every scale; the exponential decay can instead take an absolute
period (schedule.decay_every_steps), as the paper's ImageNet recipe does, so cutting a run short does not
squeeze its schedule.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.optim import lr_scheduler

from bnrepro import ConfigError
from bnrepro.norm.pairs import norm_inputs, scale_invariant


def effective_lr(cfg, batch_size: int | None = None) -> float:
    """The paper states its learning rates as multiples of a base rate (BN-x5, BN-x30): lr * lr_mult.

    With optim.scale_lr_by_batch=true, optim.lr is the rate per 256 examples and scales linearly with the
    (global) batch size (Goyal et al. 2017).
    """
    lr = cfg.lr * cfg.lr_mult
    if cfg.scale_lr_by_batch:
        if batch_size is None:
            raise ValueError("optim.scale_lr_by_batch needs the batch size")
        lr *= batch_size / 256
    if not lr > 0:
        raise ConfigError(f"learning rate must be positive, got optim.lr={cfg.lr} x optim.lr_mult="
                          f"{cfg.lr_mult}: set optim.lr to a positive number")
    return lr


def param_groups(model: nn.Module, weight_decay: float, exempt_norm_bias: bool) -> list[dict]:
    """One group, or two when norm scales/shifts and biases (every parameter with ndim <= 1) skip weight
    decay, as is usual for BN nets (decaying gamma only rescales what the next BN undoes)."""
    if not exempt_norm_bias or weight_decay == 0:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(cfg, model: nn.Module, batch_size: int | None = None) -> torch.optim.Optimizer:
    if cfg.name != "sgd":
        raise ConfigError(f"unknown optimizer '{cfg.name}': use optim=sgd")
    nesterov = cfg.nesterov
    if nesterov and not cfg.momentum > 0:
        raise ConfigError("optim.nesterov=true needs optim.momentum > 0: set one or the other")
    groups = param_groups(model, cfg.weight_decay, cfg.wd_exempt_norm_bias)
    # foreach: one multi-tensor update per step instead of a Python loop over the parameters (torch picks the
    # loop on CPU by default; 5-15% of a small net's step on digits)
    optimizer = torch.optim.SGD(groups, lr=effective_lr(cfg, batch_size), momentum=cfg.momentum,
                                nesterov=nesterov, foreach=True)
    if cfg.get("fixed_norm") is not None:
        fix_norms(optimizer, model, cfg.fixed_norm)
    return optimizer


def fix_norms(optimizer: torch.optim.Optimizer, model: nn.Module, factor) -> list[torch.Tensor]:
    """After every optimizer step, rescale the weight of each layer a scale-invariant BN follows to `factor` x its
    norm now (at initialization): w <- w * c / ||w||. BN undoes the rescaling (BN((aW)u) = BN(Wu)), so the net's
    function is the one the step made, and the effective LR lr/||w||^2 of the layer stays lr/c^2: weight decay's
    effect on such a layer without weight decay (Hoffer et al. 2018, "Norm matters", sections 3 and 5). `factor`:
    one multiple for every such layer, or one per layer in module order. Device work only (no host sync). Returns
    the target norms. On resume the model is re-initialized from the seed before the checkpoint is loaded, so the
    targets are the same."""
    weights = [layer.weight for _, layer, _ in norm_inputs(model, scale_invariant)]
    if not weights:
        raise ConfigError("optim.fixed_norm needs layers followed by a scale-invariant BN: set model.norm=bn, or "
                          "optim.fixed_norm=null")
    factors = list(factor) if hasattr(factor, "__len__") else [factor] * len(weights)  # a list or ListConfig
    if len(factors) != len(weights):
        raise ConfigError(f"optim.fixed_norm has {len(factors)} values for {len(weights)} BN-ed layers: give one, or "
                          f"one per layer")
    with torch.no_grad():
        targets = [float(f) * torch.linalg.vector_norm(w.detach()) for f, w in zip(factors, weights)]

    @torch.no_grad()
    def rescale(opt, args, kwargs):
        for w, target in zip(weights, targets):
            w.mul_(target / torch.linalg.vector_norm(w))

    optimizer.register_step_post_hook(rescale)
    return targets


def _main_schedule(cfg, optimizer, steps: int) -> lr_scheduler.LRScheduler:
    name = cfg.name
    if name == "constant":
        return lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if name == "step":  # multiply by gamma at each milestone
        milestones = sorted(max(1, round(f * steps)) for f in cfg.milestones_frac)
        return lr_scheduler.MultiStepLR(optimizer, milestones, gamma=cfg.gamma)
    if name == "exponential":
        # lr * decay_rate ** (step / period): the paper's exponential decay (GoogLeNet's 4% per 8 epochs);
        # decay_speedup=6 is its "6x faster" (section 4.2.1). The period is absolute when decay_every_steps is
        # set, else a fraction of the run
        every = cfg.decay_every_steps or cfg.decay_every_frac * steps
        period = every / cfg.decay_speedup
        if not period > 0:
            raise ConfigError("schedule.decay_every_steps (or decay_every_frac) and decay_speedup must be positive")
        if cfg.staircase:
            return lr_scheduler.StepLR(optimizer, step_size=max(1, round(period)), gamma=cfg.decay_rate)
        return lr_scheduler.ExponentialLR(optimizer, gamma=cfg.decay_rate ** (1.0 / period))
    if name == "cosine":  # half a cosine from the rate down to min_lr_frac x the rate
        eta_min = optimizer.param_groups[0]["lr"] * cfg.min_lr_frac
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps), eta_min=eta_min)
    raise ConfigError(f"unknown schedule '{name}': use schedule=<constant|step|exponential|cosine>")


def build_schedule(cfg, optimizer: torch.optim.Optimizer, max_steps: int) -> lr_scheduler.LRScheduler:
    """The LR schedule named by cfg.name, with an optional linear warmup over cfg.warmup_frac of the run in
    front of it (from warmup_start_factor x the rate). Step it once per training step."""
    warmup = round(cfg.warmup_frac * max_steps)
    main = _main_schedule(cfg, optimizer, max_steps - warmup)
    if warmup == 0:
        return main
    ramp = lr_scheduler.LinearLR(optimizer, start_factor=cfg.warmup_start_factor, end_factor=1.0,
                                 total_iters=warmup)
    return lr_scheduler.SequentialLR(optimizer, [ramp, main], milestones=[warmup])
