"""Figure 1 (b, c) probe: the distribution of the input to one unit of the last activation layer."""
from __future__ import annotations

import torch
from torch import nn

from bnrepro.models.common import ACTIVATIONS

QUANTILES = (0.15, 0.50, 0.85)
MAX_VALUES = 1 << 20  # torch.quantile's input limit is 16M; a strided subsample keeps it cheap for conv maps


def last_activation(model: nn.Module) -> nn.Module:
    acts = [m for m in model.modules() if isinstance(m, tuple(ACTIVATIONS.values()))]
    if not acts:
        raise ValueError(f"{type(model).__name__} has no activation module to probe")
    return acts[-1]


class Probe:
    """Collects the input of `unit` (a feature or a channel) of the last activation while active.

    The hook is attached only inside `with probe:` (an evaluation, or the training step just before one), so
    the other training steps pay nothing; the values stay on the device until `percentiles()`.
    """

    def __init__(self, model: nn.Module, unit: int = 0, prefix: str = "probe_p"):
        self.site, self.unit, self.prefix, self.values, self.handle = last_activation(model), unit, prefix, [], None

    def _hook(self, module, inputs, output):
        self.values.append(inputs[0].detach()[:, self.unit].reshape(-1).float())

    def __enter__(self):
        self.values = []
        self.handle = self.site.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()

    def percentiles(self) -> dict[str, float]:
        v = torch.cat(self.values)
        v = v[:: max(1, len(v) // MAX_VALUES)]
        q = torch.quantile(v, torch.tensor(QUANTILES, device=v.device)).tolist()
        return {f"{self.prefix}{round(p * 100)}": x for p, x in zip(QUANTILES, q)}
