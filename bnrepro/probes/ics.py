"""Claim C16's probe: internal covariate shift by Santurkar et al.'s Definition 2.1 (2018, section 2.2).
Registered as `ics` (trainer.probes).

For layer i: G = the gradient of the loss w.r.t. W_i at the current parameters, on the step's training batch;
G' = the same gradient, same batch, after every parameter before layer i has taken the optimizer's update of
this step, W_i and everything after it unchanged. ICS_i = ||G - G'||_2 (their definition), and cos(G, G') (their
second measure; 1 = no shift in direction). Recorded per layer at each evaluation step, the first layer left out
(nothing comes before it, so G' = G):
- `ics_l2_<i>`: ||G - G'||_2;  `ics_cos_<i>`: cos(G, G');  `ics_rel_<i>`: ||G - G'|| / ||G|| (scale-free: a
  BN net's gradients differ in size from a plain net's, which the raw norm mixes in);
where i counts the conv and linear layers from 1 in the model's parameter order (the data flow of our chains;
"before layer i" is every parameter registered before W_i: earlier layers' weights, biases and norm scales).

The update is the run's own optimizer's (SGD): d = G_all + weight_decay w, buf = momentum buf_t + d (d where the
optimizer holds no buffer yet), step = -lr (d + momentum buf if nesterov else buf); read from the optimizer's
state, which is not changed. The probe runs at an evaluation step, after that step's update: G is taken at the
parameters the next step starts from, on the batch just trained on, and the update is the one SGD would make from
G. Every pass runs in training mode (BN with batch statistics) inside `preserved` (weights, .grad, running
statistics, modes and RNG put back), uses torch.autograd.grad, and reseeds a fork of the RNG before each pass, so
dropout and noisy BN draw the same noise in G's pass and in every G' pass.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from bnrepro.probes import LoopProbe, StepView, preserved, register, reseed

LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)
MEASURES = ("l2", "cos", "rel")


def layer_weights(model: nn.Module) -> list[nn.Parameter]:
    """The weight of each conv and linear layer, in the model's parameter order (weight-normalized layers, whose
    weight is computed, are left out)."""
    return [m.weight for m in model.modules() if isinstance(m, LAYERS) and isinstance(m.weight, nn.Parameter)]


def sgd_update(optimizer, params: list[nn.Parameter], grads: list[torch.Tensor], lr: float) -> list[torch.Tensor]:
    """The step SGD would take from `grads` (torch.optim.SGD's formula, dampening 0), its state left as it is; a
    plain gradient step -lr g without an optimizer."""
    if optimizer is None:
        return [-lr * g for g in grads]
    group_of = {p: group for group in optimizer.param_groups for p in group["params"]}
    steps = []
    for p, g in zip(params, grads):
        group = group_of.get(p)
        if group is None:  # not trained (frozen): no update
            steps.append(torch.zeros_like(p))
            continue
        d = g + group["weight_decay"] * p.detach() if group["weight_decay"] else g
        mu = group["momentum"]
        if mu:
            buf = optimizer.state.get(p, {}).get("momentum_buffer")
            buf = d if buf is None else mu * buf + d
            d = d + mu * buf if group["nesterov"] else buf
        steps.append(-lr * d)
    return steps


def shift(model: nn.Module, loss_fn: Callable[[nn.Module], torch.Tensor], lr: float, optimizer=None,
          device: torch.device | None = None) -> dict[str, float]:
    """{ics_<measure>_<i>} for every layer i >= 2 (see the module docstring). `loss_fn(model)` runs the model on
    the batch and returns the scalar loss. Leaves the weights as they were (the caller's `preserved` restores
    the rest)."""
    device = device or next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    weights = layer_weights(model)
    position = {p: k for k, p in enumerate(params)}

    def grads(wrt: list[nn.Parameter]) -> list[torch.Tensor]:
        reseed(device)
        got = torch.autograd.grad(loss_fn(model), wrt, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g.detach() for p, g in zip(wrt, got)]

    g_all = grads(params)
    update = sgd_update(optimizer, params, g_all, lr)
    start = [p.detach().clone() for p in params]
    out: dict[str, float] = {}
    try:
        for i, w in enumerate(weights[1:], start=2):
            before = position[w]
            with torch.no_grad():
                for p, p0, step in zip(params[:before], start[:before], update[:before]):
                    p.copy_(p0 + step.to(p.dtype))
            g, g2 = g_all[before].double(), grads([w])[0].double()
            with torch.no_grad():
                for p, p0 in zip(params[:before], start[:before]):
                    p.copy_(p0)
            diff, norm, norm2 = (g - g2).norm().item(), g.norm().item(), g2.norm().item()
            out[f"ics_l2_{i}"] = diff
            out[f"ics_rel_{i}"] = diff / norm if norm > 0 else float("nan")
            out[f"ics_cos_{i}"] = (torch.dot(g.flatten(), g2.flatten()).item() / (norm * norm2)
                                   if norm > 0 and norm2 > 0 else float("nan"))
    finally:
        with torch.no_grad():
            for p, p0 in zip(params, start):
                p.copy_(p0)
    return out


class ICS(LoopProbe):
    """Santurkar et al.'s ICS per layer at each evaluation step."""

    def __init__(self, layers: int):
        self.layers, self.last = layers, {}

    def keys(self) -> tuple[str, ...]:
        return tuple(f"ics_{m}_{i}" for i in range(2, self.layers + 1) for m in MEASURES)

    def measure(self, view: StepView) -> None:
        x = view.speed.input(view.x)

        def loss_fn(model):
            with view.speed.autocast():
                logits = model(x).float()
            return view.loss(logits, view.y)

        with preserved(view.model) as model:
            model.train()
            self.last = shift(model, loss_fn, view.lr, view.optimizer, view.device)

    def values(self) -> dict[str, float]:
        return dict(self.last)


@register("ics")
def ics_probes(cfg, model: nn.Module) -> list[LoopProbe]:
    return [ICS(len(layer_weights(model)))]
