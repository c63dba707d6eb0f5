"""Measurements the training loop takes beside training: probe objects with one small interface, chosen by
name with `trainer.probes` (default `[percentiles]`, Figure 1's).

The loop calls a probe only at these moments; the other steps never call one, so they pay nothing:
- `train_step()` / `test_eval()`: context managers around the training step of an evaluation step (model in
  training mode) and around the evaluation on the test set (eval mode), for forward hooks;
- `measure(view)`: at each evaluation step, after the evaluations, with the step's training batch; a probe that
  needs extra forward/backward passes (a line search along the gradient, per-layer gradient norms) runs them here;
- then `values()`: a dict of `keys()` to numbers, put into the step's metrics row;
- `at_start(view)`: once, before the first step of a fresh run (not on resume); its dict is logged as a metrics
  row at step 0 (measurements at initialization);
- `at_end(view)`: once, when training completed; its dict goes into summary.json under `end_probes`
  (measurements on the trained net).

A probe leaves training exactly as it was: it touches neither the training RNG nor the data order (random
numbers come from inside `torch.random.fork_rng()`), and a probe that runs the model restores what it changes
(BN running statistics, `.grad`, train/eval mode). tests/test_golden_loop.py checks that a run's numbers do not
move; tests/test_probes.py that each registered probe leaves the model's state bit-identical.

A probe module registers a factory `(cfg, model) -> list[LoopProbe]` under its name with `@register(name)` and
is imported at the bottom of this file.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

NOTHING = contextlib.nullcontext()  # reusable: entering it does nothing


@dataclass
class StepView:
    """What a probe may read at its moments. `model` is the plain module (not DDP or compiled); `x, y` the
    training batch of the step (at_start: the first batch; at_end: the last); `loss(logits, y)` the training
    loss; `speed` the run's device path (`speed.autocast()`, `speed.input(x)`); `data` the run's data
    (`data.eval_batches(split, batch, rank, world)`); `optimizer` the run's optimizer, read-only."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    lr: float
    step: int
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    speed: Any
    data: Any
    device: torch.device
    cfg: Any
    optimizer: Any = None  # the run's optimizer, to read (C16's probe computes the update it would make)


class LoopProbe:
    """The interface the loop calls; subclasses override what they need."""

    def keys(self) -> tuple[str, ...]:
        """The metrics row's keys that `values()` fills."""
        return ()

    def train_step(self):
        """A context manager around the training step of an evaluation step."""
        return NOTHING

    def test_eval(self):
        """A context manager around the evaluation on the test set."""
        return NOTHING

    def measure(self, view: StepView) -> None:
        """Extra passes at an evaluation step, after the evaluations; results returned by values()."""

    def values(self) -> dict[str, float]:
        return {}

    def at_start(self, view: StepView) -> dict:
        """Measurements at initialization (a fresh run only): logged as a metrics row at step 0."""
        return {}

    def at_end(self, view: StepView) -> dict:
        """Measurements on the trained net: summary.json's `end_probes`."""
        return {}


Factory = Callable[[Any, nn.Module], list[LoopProbe]]
REGISTRY: dict[str, Factory] = {}


def register(name: str):
    def add(factory: Factory) -> Factory:
        REGISTRY[name] = factory
        return factory
    return add


def build(cfg, model: nn.Module) -> list[LoopProbe]:
    """The probes `cfg.trainer.probes` names, in that order (their keys appear in a metrics row in that order)."""
    probes: list[LoopProbe] = []
    for name in cfg.trainer.probes:
        probes += REGISTRY[name](cfg, model)
    return probes


@contextlib.contextmanager
def watching(probes: list[LoopProbe], moment: str):
    """Enter every probe's context for `moment` ("train_step" or "test_eval"), in list order."""
    with contextlib.ExitStack() as stack:
        for probe in probes:
            stack.enter_context(getattr(probe, moment)())
        yield


@contextlib.contextmanager
def preserved(model: nn.Module):
    """Run extra passes on `model` and leave it as it was: parameters' .grad, buffers (BN running statistics,
    batch counters), train/eval mode and the RNG. For probes whose measure/at_end run forward/backward."""
    grads = {p: (None if p.grad is None else p.grad.detach().clone()) for p in model.parameters()}
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    params = {name: p.detach().clone() for name, p in model.named_parameters()}
    modes = {m: m.training for m in model.modules()}
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, p in model.named_parameters():
                    p.copy_(params[name])
                for name, b in model.named_buffers():
                    b.copy_(buffers[name])
            for p, g in grads.items():
                p.grad = g
            for m, mode in modes.items():
                m.train(mode)


PASS_SEED = 20181  # the fixed seed of every extra pass's RNG fork (dropout masks, noisy BN noise)


def reseed(device: torch.device) -> None:
    """Reseed the (forked, inside `preserved`) RNG before a probe's pass, so every pass of a measurement draws the
    same dropout masks and noisy-BN noise (C11's points along the line, C16's G and G')."""
    torch.random.default_generator.manual_seed(PASS_SEED)
    if device.type == "cuda":
        torch.cuda.manual_seed(PASS_SEED)  # the current device only: preserved() forked exactly that one


from bnrepro.probes import percentiles  # noqa: E402,F401  (registers its probes)
from bnrepro.probes.percentiles import Probe, fig1_probes  # noqa: E402,F401
from bnrepro.probes import landscape  # noqa: E402,F401  (C11's line probe)
from bnrepro.probes import grad_norms  # noqa: E402,F401  (C3's per-layer gradient norms)
from bnrepro.probes import weight_norms  # noqa: E402,F401  (C14)
from bnrepro.probes import scale_invariance  # noqa: E402,F401  (C14)
from bnrepro.probes import init_gradients  # noqa: E402,F401  (C12: gradient norms at init)
from bnrepro.probes import fold  # noqa: E402,F401  (C15: BN folded into the layer before it)
from bnrepro.probes import mode_gap  # noqa: E402,F401  (C7: train- vs eval-mode accuracy)
from bnrepro.probes import ics  # noqa: E402,F401  (C16: internal covariate shift, Santurkar's definition)
