"""Per-layer gradient norms for claim C3's gradient flow ("BN improves gradient flow"). Registered as
`grad_norms` (trainer.probes).

At each evaluation step it reads the `.grad` the step itself left (loop.train_step zeroes the gradients, runs
backward on the step's batch, then steps the optimizer, whose foreach SGD never writes into `.grad`: weight
decay and momentum are added out of place), so it costs no extra pass: `gradnorm_l<i>` = ||dL/dW_i||, the l2
norm of the weight gradient of the i-th weight layer (every module with a weight of 2 or more dimensions:
Linear, Conv) in module order; l0 is the first layer, the last one the classifier. Biases and norm scales are
left out: a BN net has no hidden-layer bias, so only the weights compare across arms.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from bnrepro.probes import LoopProbe, StepView, register

PREFIX = "gradnorm_l"


def weight_layers(model: nn.Module) -> list[torch.nn.Parameter]:
    """The weight of every module whose own `weight` has ndim >= 2 (Linear, Conv), in module order."""
    return [m.weight for m in model.modules()
            if isinstance(getattr(m, "weight", None), nn.Parameter) and m.weight.ndim >= 2]


class GradNorms(LoopProbe):
    def __init__(self, model: nn.Module):
        self.weights = weight_layers(model)
        self.last: dict[str, float] = {}

    def keys(self) -> tuple[str, ...]:
        return tuple(f"{PREFIX}{i}" for i in range(len(self.weights)))

    def measure(self, view: StepView) -> None:
        grads = [w.grad for w in self.weights]
        if any(g is None for g in grads):
            self.last = {k: math.nan for k in self.keys()}
            return
        with torch.no_grad():  # one host sync for all layers
            norms = torch.stack([g.detach().float().norm() for g in grads]).tolist()
        self.last = dict(zip(self.keys(), norms))

    def values(self) -> dict[str, float]:
        return dict(self.last)


@register("grad_norms")
def grad_norm_probes(cfg, model: nn.Module) -> list[LoopProbe]:
    return [GradNorms(model)]
