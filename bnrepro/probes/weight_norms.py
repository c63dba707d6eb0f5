"""C14's probe (`weight_norms`): the weight norm ||w|| of every layer a scale-invariant BN follows and its
effective learning rate lr / ||w||^2, at each evaluation step and at initialization (the step-0 row).

Such a layer's output does not depend on ||w|| (BN((aW)u) = BN(Wu)) and its gradient scales as 1/||w||, so an
SGD step moves its direction by about lr / ||w||^2 (van Laarhoven 2017; Hoffer et al. 2018): without weight decay
||w|| grows (each step adds a component orthogonal to w) and the effective rate falls; with weight decay the two
pulls balance. Keys: `wnorm_<i>` and `eff_lr_<i>` for the i-th such layer in module order (`layers` names them).
It only reads the weights: no pass, nothing to restore."""
from __future__ import annotations

import torch
from torch import nn

from bnrepro.norm.pairs import norm_inputs, scale_invariant
from bnrepro.probes import LoopProbe, StepView, register


def bn_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, layer) of the conv and linear layers whose output a scale-invariant BN normalizes."""
    return [(name, layer) for name, layer, _ in norm_inputs(model, scale_invariant)]


class WeightNorms(LoopProbe):
    def __init__(self, model: nn.Module):
        self.layers = bn_layers(model)
        self.last: dict[str, float] = {}

    def keys(self) -> tuple[str, ...]:
        return tuple(f"{kind}_{i}" for i in range(len(self.layers)) for kind in ("wnorm", "eff_lr"))

    def _read(self, lr: float) -> dict[str, float]:
        row = {}
        with torch.no_grad():
            for i, (_, layer) in enumerate(self.layers):
                norm = torch.linalg.vector_norm(layer.weight.detach().double()).item()
                row[f"wnorm_{i}"], row[f"eff_lr_{i}"] = norm, lr / norm ** 2
        return row

    def measure(self, view: StepView) -> None:
        self.last = self._read(view.lr)

    def values(self) -> dict[str, float]:
        return self.last

    def at_start(self, view: StepView) -> dict:
        return self._read(view.lr)


@register("weight_norms")
def weight_norm_probes(cfg, model: nn.Module) -> list[LoopProbe]:
    return [WeightNorms(model)]
