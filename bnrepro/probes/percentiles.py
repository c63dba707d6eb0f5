"""Figure 1 (b, c)'s probes: the input to one unit of the last activation layer, on the test set (`probe_p*`)
and on the training batch of the step (`probe_train_p*`, where noisy BN's noise and batch statistics act, C9).
Registered as `percentiles` (trainer.probes)."""
from __future__ import annotations

import torch
from torch import nn

from bnrepro.models.common import ACTIVATIONS
from bnrepro.probes import NOTHING, LoopProbe, register

QUANTILES = (0.15, 0.50, 0.85)
MAX_VALUES = 1 << 20  # torch.quantile's input limit is 16M; a strided subsample keeps it cheap for conv maps


def last_activation(model: nn.Module) -> nn.Module:
    acts = [m for m in model.modules() if isinstance(m, tuple(ACTIVATIONS.values()))]
    if not acts:
        raise ValueError(f"{type(model).__name__} has no activation module to probe")
    return acts[-1]


class Probe(LoopProbe):
    """Collects the input of `unit` (a feature or a channel) of the last activation while active.

    `phase` says when: "test" (during the test-set evaluation) or "train" (during the training step of an
    evaluation step). The hook is attached only inside `with probe:`, so the other steps pay nothing; the
    values stay on the device until `values()` (alias `percentiles()`).
    """

    def __init__(self, model: nn.Module, unit: int = 0, prefix: str = "probe_p", phase: str = "test"):
        if phase not in ("test", "train"):
            raise ValueError(f"phase={phase!r}: use test or train")
        self.site, self.unit, self.prefix, self.phase = last_activation(model), unit, prefix, phase
        self.values_seen, self.handle = [], None

    def _hook(self, module, inputs, output):
        self.values_seen.append(inputs[0].detach()[:, self.unit].reshape(-1).float())

    def __enter__(self):
        self.values_seen = []
        self.handle = self.site.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()

    def keys(self) -> tuple[str, ...]:
        return tuple(f"{self.prefix}{round(p * 100)}" for p in QUANTILES)

    def train_step(self):
        return self if self.phase == "train" else NOTHING

    def test_eval(self):
        return self if self.phase == "test" else NOTHING

    def values(self) -> dict[str, float]:
        v = torch.cat(self.values_seen)
        v = v[:: max(1, len(v) // MAX_VALUES)]
        q = torch.quantile(v, torch.tensor(QUANTILES, device=v.device)).tolist()
        return dict(zip(self.keys(), q))

    percentiles = values


def fig1_probes(model: nn.Module, unit: int, compiled: bool) -> list[LoopProbe]:
    """Figure 1's probes: the test-set one, and the training-mode one except under torch.compile, where
    attaching a hook would force a recompile."""
    probes: list[LoopProbe] = [Probe(model, unit)]
    if not compiled:
        probes.append(Probe(model, unit, prefix="probe_train_p", phase="train"))
    return probes


@register("percentiles")
def percentile_probes(cfg, model: nn.Module) -> list[LoopProbe]:
    return fig1_probes(model, cfg.trainer.probe_unit, compiled=cfg.trainer.compile)
