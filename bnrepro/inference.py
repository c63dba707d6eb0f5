"""Inference-time BN tools: folding BN into the preceding layer, precise BN (two estimators), and batch-statistics
evaluation."""
from __future__ import annotations

import copy
from collections import Counter
from contextlib import contextmanager
from typing import Iterable

import torch
from torch import fx, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from bnrepro.norm.batch import FrozenBatchNorm, sub_batch_moments
from bnrepro.norm.weight import MeanOnlyBatchNorm


class _NormLeafTracer(fx.Tracer):
    """Traces through the model but keeps every BN a single node (our BN classes branch on batch shape)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, _BatchNorm) or super().is_leaf_module(m, qualname)


def fold_bn(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` with every BN that directly follows a conv or linear layer folded into it
    (the BN becomes nn.Identity). The model's class and structure are kept; the data flow found by tracing
    the forward decides which pairs fold: the layer's only consumer is the BN and each runs once."""
    folded = copy.deepcopy(model).eval()
    graph = _NormLeafTracer().trace(folded)
    modules = dict(folded.named_modules())
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], _BatchNorm):
            continue
        src = node.args[0]
        if not (isinstance(src, fx.Node) and src.op == "call_module" and len(src.users) == 1
                and calls[src.target] == 1 and calls[node.target] == 1):
            continue
        layer, bn = modules[src.target], modules[node.target]
        if type(layer) in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
            fused = fuse_conv_bn_eval(layer, bn)
        elif type(layer) is nn.Linear and bn.num_features == layer.out_features:
            fused = fuse_linear_bn_eval(layer, bn)
        else:
            continue
        folded.set_submodule(src.target, fused)
        folded.set_submodule(node.target, nn.Identity())
    return folded


def _recalibrated_norms(model: nn.Module) -> list[_BatchNorm]:
    """The BN layers whose population statistics are estimated (frozen_bn keeps its statistics by design)."""
    return [m for m in model.modules()
            if isinstance(m, _BatchNorm) and not isinstance(m, FrozenBatchNorm) and m.running_mean is not None]


ESTIMATORS = ("population", "alg2")


@torch.no_grad()
def precise_bn(model: nn.Module, batches: Iterable, num_examples: int, estimator: str = "population") -> int:
    """Precise BN (Wu & Johnson 2021): replace every BN's running statistics by population statistics of
    at least `num_examples` training examples, with the weights fixed. Returns the examples used.

    Each BN sees its input as in training (the model in train mode, no grad). `estimator`:
    - "population" (Wu & Johnson's, fvcore's update_bn_stats default): the mean and the sample variance
      (n-1) of all the recalibration values combined, E[x] and E[x^2] - E[x]^2 over every batch at once, so
      the spread between batch means counts as it does in the population;
    - "alg2" (the BN paper's Algorithm 2): E[x] = the mean of the normalization-batch means, Var[x] =
      m/(m-1) x the mean of their biased variances (within-batch spread only).
    The normalization batch is what the layer normalizes over in training: the batch for bn and noisy_bn,
    the sub-batch of `ghost_batch` examples for ghost_bn and brn (it matters to alg2 only). noisy_bn's noise
    stays on, since training-time inputs to later layers carry it. `batches` yields inputs or (input, target)."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"precise BN estimator must be one of {ESTIMATORS}, got {estimator!r}")
    norms = _recalibrated_norms(model)
    # population: sums of m * mean, m * (var + mean^2) and of m; alg2: sums of means, of variances, batches
    sums = {m: [0.0, 0.0, 0] for m in norms}

    def accumulate(module, args):
        mean, var, m = sub_batch_moments(args[0].float(), getattr(module, "ghost_batch", 0))  # bf16 in autocast
        mean, var, acc = mean.double(), var.double(), sums[module]
        if estimator == "population":
            acc[0], acc[1], acc[2] = acc[0] + m * mean.sum(0), acc[1] + m * (var + mean ** 2).sum(0), \
                acc[2] + m * len(mean)
        else:
            acc[0], acc[1], acc[2] = acc[0] + mean.sum(0), acc[1] + (var * (m / (m - 1))).sum(0), \
                acc[2] + len(mean)

    steps = [m.num_batches_tracked.clone() for m in norms]  # brn's ramp counts training steps
    handles = [m.register_forward_pre_hook(accumulate) for m in norms]
    was_training, seen = model.training, 0
    model.train()
    try:
        for batch in batches:
            if seen >= num_examples:
                break
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            model(x)
            seen += len(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    for m, step in zip(norms, steps):
        first, second, count = sums[m]
        if count and estimator == "population":
            mean = first / count
            m.running_mean.copy_(mean)
            m.running_var.copy_((second / count - mean ** 2).clamp_min(0) * (count / max(count - 1, 1)))
        elif count:
            m.running_mean.copy_(first / count)
            m.running_var.copy_(second / count)
        if isinstance(m, MeanOnlyBatchNorm):  # it divides by no variance: running_var stays 1, folding stays exact
            m.running_var.fill_(1.0)
        m.num_batches_tracked.copy_(step)
    return seen


@torch.no_grad()
def ema_distance(ema: nn.Module, precise: nn.Module) -> dict:
    """How far each BN's running (EMA) statistics are from its population statistics (a precise-BN copy of the
    same weights): per unit the 2-Wasserstein distance between N(mu_ema, var_ema) and N(mu_pop, var_pop) in
    units of the population sd, sqrt((mu_ema - mu_pop)^2 + (sd_ema - sd_pop)^2) / sd_pop, so a shift of the mean
    and a wrong scale both count and 0.1 means the EMA normalizes 0.1 sd off. Per layer the mean over units;
    `mean` the mean over layers (C8's precondition reads it). Costs one pass over the BN buffers, at the end."""
    layers = []
    for e, p in zip(_recalibrated_norms(ema), _recalibrated_norms(precise)):
        sd_e, sd_p = (e.running_var.double() + e.eps).sqrt(), (p.running_var.double() + p.eps).sqrt()
        w2 = ((e.running_mean.double() - p.running_mean.double()) ** 2 + (sd_e - sd_p) ** 2).sqrt() / sd_p
        layers.append(float(w2.mean()))
    return {"mean": sum(layers) / len(layers) if layers else None, "layers": layers}


@contextmanager
def batch_statistics(model: nn.Module):
    """Within the block, every BN of an eval-mode model normalizes with the statistics of the batch it sees
    (ghost_bn and brn: of each sub-batch, as in training; noisy_bn without noise) and leaves its running
    statistics untouched; frozen_bn keeps its fixed statistics. It works by lending the running buffers
    away, the case in which torch's BN uses batch statistics in eval mode."""
    norms = _recalibrated_norms(model)
    saved = [(m.running_mean, m.running_var) for m in norms]
    for m in norms:
        m.running_mean, m.running_var = None, None
    try:
        yield model
    finally:
        for m, (mean, var) in zip(norms, saved):
            m.running_mean, m.running_var = mean, var
