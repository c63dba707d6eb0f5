"""Claim C11's line probe (Santurkar et al. 2018, section 3.1 and Fig. 4): how the loss and its gradient change
along the gradient direction. Registered as `landscape` (trainer.probes).

At each evaluation step, on the step's training batch, with the model in training mode (BN with batch
statistics, as the optimizer sees it): the gradient g at the current weights w, then the loss and gradient at
w - eta g for every fixed step size eta = m x LR, m in STEP_MULTIPLES. Recorded per step:
- `landscape_loss_range`: max - min of the loss over {w} and the points w - eta g ("loss landscape", Fig. 4a);
- `landscape_grad_change`: max over eta of ||grad(w - eta g) - g|| ("gradient predictiveness", Fig. 4b);
- `landscape_beta`: max over eta of ||grad(w - eta g) - g|| / ||eta g|| ("effective beta-smoothness", Fig. 4c);
- `landscape_grad_norm`: ||g||, to read the other three against.

Step sizes. Santurkar et al.'s Fig. 4 caption, as we recall it, caps the distance at eta = 0.4 x the gradient
("for larger steps the standard network just performs worse"), for VGG nets trained at LR 0.1 (their Fig. 1),
i.e. up to 4x the LR. NOT verified here: neither the paper's text nor its code (MadryLab's) could be retrieved
from this machine's sources, and the lower end and grid of their line are unknown to us. We take
eta = LR x {0.5, 1, 2, 4}: up to 4x, down to half a step; at an LR of 0.1 (ours at cpu scale) 0.05 .. 0.4.

The passes run inside `preserved` (weights, .grad, BN running statistics, modes and RNG put back), use
torch.autograd.grad (no .grad is written), and reseed a fork of the RNG before each pass, so dropout or noisy
BN draw the same masks at every point of the line and training's own RNG is untouched.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn

from bnrepro.probes import LoopProbe, StepView, preserved, register, reseed

STEP_MULTIPLES = (0.5, 1.0, 2.0, 4.0)  # eta / LR; see the module docstring for the paper's range
KEYS = ("landscape_loss_range", "landscape_grad_change", "landscape_beta", "landscape_grad_norm")


def line_measures(model: nn.Module, loss_fn: Callable[[nn.Module], torch.Tensor], etas: Sequence[float],
                  device: torch.device | None = None) -> dict[str, float]:
    """The three measures along -g for the absolute step sizes `etas`. `loss_fn(model)` runs the model and returns
    the scalar loss. Leaves the model's weights as they were (the caller's `preserved` restores the rest)."""
    device = device or next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    start = [p.detach().clone() for p in params]

    def loss_and_grad() -> tuple[float, torch.Tensor]:
        reseed(device)
        loss = loss_fn(model)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        flat = torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1).float()
                          for p, g in zip(params, grads)])
        return loss.item(), flat

    loss0, g0 = loss_and_grad()
    g_norm = g0.norm().item()
    shapes = [p.shape for p in params]
    g_parts = [part.view(shape) for part, shape in zip(torch.split(g0, [p.numel() for p in params]), shapes)]
    losses, changes, betas = [loss0], [], []
    try:
        for eta in etas:
            with torch.no_grad():
                for p, w, g in zip(params, start, g_parts):
                    p.copy_(w - eta * g.to(p.dtype))
            loss, g = loss_and_grad()
            change = (g - g0).norm().item()
            losses.append(loss)
            changes.append(change)
            betas.append(change / (eta * g_norm) if eta * g_norm > 0 else math.nan)
    finally:
        with torch.no_grad():
            for p, w in zip(params, start):
                p.copy_(w)
    return {"landscape_loss_range": max(losses) - min(losses), "landscape_grad_change": max(changes),
            "landscape_beta": max(betas), "landscape_grad_norm": g_norm}


class Landscape(LoopProbe):
    """The line probe at each evaluation step; `multiples` are the step sizes in units of the step's LR."""

    def __init__(self, multiples: Sequence[float] = STEP_MULTIPLES):
        self.multiples, self.last = tuple(multiples), {}

    def keys(self) -> tuple[str, ...]:
        return KEYS

    def measure(self, view: StepView) -> None:
        etas = [m * view.lr for m in self.multiples]
        x = view.speed.input(view.x)

        def loss_fn(model):
            with view.speed.autocast():
                logits = model(x).float()
            return view.loss(logits, view.y)

        with preserved(view.model) as model:
            model.train()
            self.last = line_measures(model, loss_fn, etas, view.device)

    def values(self) -> dict[str, float]:
        return dict(self.last)


@register("landscape")
def landscape_probes(cfg, model: nn.Module) -> list[LoopProbe]:
    return [Landscape()]
