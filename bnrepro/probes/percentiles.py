"""Figure 1 (b, c)'s probes: the input to the last activation layer, on the test set (`probe_p*`) and on the
training batch of the step (`probe_train_p*`, where noisy BN's noise and batch statistics act, C9). Registered as
`percentiles` (trainer.probes).

Each evaluation writes two things per probe:
- `<prefix>15/50/85`: the percentiles of the drawn unit (`trainer.probe_unit`, default 0): the paper's Fig. 1(b, c)
  shows one typical unit. Unit 0 is as good a draw as any: the units of a layer are exchangeable at a seeded
  random init, so which index is watched carries no choice;
- `<units prefix>15/50/85` (probe_units_p*, probe_train_units_p*): a list with one value per unit of the layer (a
  feature, or a channel of a conv map): what the drift claims judge (bnrepro/report/drift.py), since one unit's
  drift varies so much from seed to seed that no affordable number of seeds decides a ratio of two of them.
  Per unit, the first `MAX_VALUES // units` values seen (the first examples of the fixed, ordered test set: the
  same ones at every evaluation); at cpu scale that is the whole test set.
"""
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


def units_prefix(prefix: str) -> str:
    """The per-unit series' key prefix beside a drawn unit's: probe_p -> probe_units_p."""
    return prefix.removesuffix("p") + "units_p"


def by_unit(x: torch.Tensor) -> torch.Tensor:
    """(units, values): a layer input (batch, units) or (batch, channels, *spatial) with units in a row each."""
    return x.transpose(0, 1).reshape(x.shape[1], -1)


class Probe(LoopProbe):
    """Collects the input of the last activation while active: all of `unit` (a feature or a channel), and a
    fixed number of values of every unit.

    `phase` says when: "test" (during the test-set evaluation) or "train" (during the training step of an
    evaluation step). The hook is attached only inside `with probe:`, so the other steps pay nothing; the
    values stay on the device until `values()` (alias `percentiles()`), whose .tolist() is the one host sync.
    """

    def __init__(self, model: nn.Module, unit: int = 0, prefix: str = "probe_p", phase: str = "test"):
        if phase not in ("test", "train"):
            raise ValueError(f"phase={phase!r}: use test or train")
        self.site, self.unit, self.prefix, self.phase = last_activation(model), unit, prefix, phase
        self.units_prefix = units_prefix(prefix)
        self.values_seen, self.units_seen, self.per_unit, self.handle = [], [], 0, None

    def _hook(self, module, inputs, output):
        x = inputs[0].detach()
        self.values_seen.append(x[:, self.unit].reshape(-1).float())
        # every unit: only until each has its share (shapes are known on the host, so counting costs no sync)
        cap = max(1, MAX_VALUES // x.shape[1])
        left = cap - self.per_unit
        if left > 0:
            examples = -(-left // x[0, 0].numel())  # a conv map gives each channel H x W values per example
            self.units_seen.append(by_unit(x[:examples])[:, :left].float())  # copies only the examples kept
            self.per_unit += self.units_seen[-1].shape[1]

    def __enter__(self):
        self.values_seen, self.units_seen, self.per_unit = [], [], 0
        self.handle = self.site.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()

    def keys(self) -> tuple[str, ...]:
        return tuple(f"{pre}{round(p * 100)}" for pre in (self.prefix, self.units_prefix) for p in QUANTILES)

    def train_step(self):
        return self if self.phase == "train" else NOTHING

    def test_eval(self):
        return self if self.phase == "test" else NOTHING

    def values(self) -> dict[str, float | list[float]]:
        v = torch.cat(self.values_seen)
        v = v[:: max(1, len(v) // MAX_VALUES)]
        qs = torch.tensor(QUANTILES, device=v.device)
        one = torch.quantile(v, qs)
        every = torch.quantile(torch.cat(self.units_seen, 1), qs, dim=1)  # (quantiles, units): the layer at once
        rows = torch.cat([one[:, None], every], 1).tolist()  # one transfer for both
        return dict(zip(self.keys(), [r[0] for r in rows] + [r[1:] for r in rows]))

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
