"""C12's probe (Yang et al. 2019, "A Mean Field Theory of Batch Normalization"): the gradient norm of every
conv and linear layer's weight at initialization, on the fixed training batch, and the per-layer growth rate of
those norms going backwards (from the last layer towards the first). Registered as `init_gradients`.

`at_start` runs one forward/backward in training mode and fp32 (BN normalizes with the batch's statistics, as in
the first training step) inside `preserved(model)`, so the run trains exactly as without the probe; its dict is
the step-0 metrics row:
- `init_grad_norm_<i>`: ||dL/dW_i|| for the i-th conv/linear layer in forward order (i from 0, 3 digits);
- `init_grad_growth`: the growth rate per layer going backwards, exp(-slope) of the least-squares fit of
  log ||dL/dW_i|| on i with one intercept per weight shape (`growth_rate`), so layers of another width (the
  first layer, the classifier, a stage's first conv) do not bend the line; > 1 means the gradients explode
  towards the input;
- `init_grad_layers`: how many layers the fit used (those sharing a shape with another layer).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from bnrepro.probes import LoopProbe, StepView, preserved, register
from bnrepro.probes.grad_norms import weight_layers  # the conv/linear weights, in module order

PREFIX = "init_grad_norm_"


def layer_gradient_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn) -> list[float]:
    """||dL/dW|| of each conv/linear weight after one forward/backward of (x, y); the model is left as it was."""
    weights = weight_layers(model)
    with preserved(model):
        model.train()
        for p in model.parameters():
            p.grad = None
        loss_fn(model(x), y).backward()
        return [float(w.grad.detach().float().norm()) if w.grad is not None else math.nan for w in weights]


def growth_rate(norms, groups) -> tuple[float, int]:
    """Per-layer growth of the gradient norm going backwards: exp(-b) where b is the common slope of
    log(norm_i) = a_g + b * i over layers i, with one intercept a_g per group g (a weight shape); groups of one
    layer carry no slope information and drop out. Returns (rate, layers used); (nan, 0) without two layers
    in one group. Non-positive or non-finite norms are left out."""
    idx = np.arange(len(norms), dtype=float)
    norms = np.asarray(norms, dtype=float)
    keep = np.isfinite(norms) & (norms > 0)
    by_group: dict = {}
    for i in np.nonzero(keep)[0]:
        by_group.setdefault(groups[i], []).append(i)
    sxx = sxy = 0.0
    used = 0
    for members in by_group.values():
        if len(members) < 2:
            continue
        li, lv = idx[members], np.log(norms[members])
        sxx += float(((li - li.mean()) ** 2).sum())
        sxy += float(((li - li.mean()) * (lv - lv.mean())).sum())
        used += len(members)
    if sxx == 0:
        return math.nan, 0
    return math.exp(-sxy / sxx), used


class InitGradients(LoopProbe):
    def __init__(self, model: nn.Module):
        self.shapes = [tuple(w.shape) for w in weight_layers(model)]

    def at_start(self, view: StepView) -> dict:
        # in fp32 even where training runs in bf16: the norms span orders of magnitude over 100 layers
        norms = layer_gradient_norms(view.model, view.speed.input(view.x), view.y, view.loss)
        rate, used = growth_rate(norms, self.shapes)
        row = {f"{PREFIX}{i:03d}": v for i, v in enumerate(norms)}
        row.update(init_grad_growth=rate, init_grad_layers=used)
        return row


@register("init_gradients")
def init_gradient_probes(cfg, model: nn.Module) -> list[LoopProbe]:
    return [InitGradients(model)]
