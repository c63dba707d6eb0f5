"""C11's line probe (`landscape`) and C3's per-layer gradient norms (`grad_norms`): each measurement against a
hand computation, and a run with both probes has exactly the golden numbers (tests/test_golden_loop.py)."""
from __future__ import annotations

import copy
import json
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from bnrepro import loop
from bnrepro.loop import NO_CONTEXT, Speed
from bnrepro.optim import build_optimizer, build_schedule
from bnrepro.probes import REGISTRY, StepView
from bnrepro.probes.grad_norms import GradNorms
from bnrepro.probes.landscape import STEP_MULTIPLES, Landscape, line_measures
from bnrepro.schema import Optim, Schedule, Trainer
from bnrepro.train import train
from conftest import compose_cfg
from test_golden_loop import COMMON, GOLDEN, IDENTITY, RUNS, _rows, _summary


class Quadratic(nn.Module):
    """L(w) = 1/2 sum_i a_i w_i^2: g = a * w, and along -g everything is known in closed form."""

    def __init__(self, w, a):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w, dtype=torch.float32))
        self.register_buffer("a", torch.tensor(a, dtype=torch.float32))

    def forward(self, x=None):
        return 0.5 * (self.a * self.w ** 2).sum()


def test_line_measures_on_a_quadratic_match_the_closed_form():
    w, a = [1.0, -2.0, 0.5], [1.0, 3.0, 0.2]
    model = Quadratic(w, a)
    etas = [0.05, 0.1, 0.2, 0.4]
    got = line_measures(model, lambda m: m(), etas)
    wt, at = torch.tensor(w, dtype=torch.float64), torch.tensor(a, dtype=torch.float64)
    g = at * wt
    loss = lambda eta: float(0.5 * (at * ((1 - eta * at) * wt) ** 2).sum())
    losses = [loss(0.0)] + [loss(e) for e in etas]
    # grad(w - eta g) - g = -eta a^2 w: its norm grows with eta; divided by ||eta g|| it is ||a^2 w|| / ||a w||
    want = {"landscape_loss_range": max(losses) - min(losses),
            "landscape_grad_change": max(etas) * float((at ** 2 * wt).norm()),
            "landscape_beta": float((at ** 2 * wt).norm() / g.norm()),
            "landscape_grad_norm": float(g.norm())}
    assert got == pytest.approx(want, rel=1e-5)
    assert model.w.tolist() == w  # the weights are put back


def test_a_pure_quadratic_bowl_has_beta_equal_to_its_curvature():
    model = Quadratic([3.0, -1.0], [2.5, 2.5])  # isotropic: beta-smoothness is exactly a
    got = line_measures(model, lambda m: m(), [0.1, 0.3])
    assert got["landscape_beta"] == pytest.approx(2.5, rel=1e-5)


def _state(model):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            [None if p.grad is None else p.grad.clone() for p in model.parameters()],
            [m.training for m in model.modules()])


def _bn_mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8, bias=False), nn.BatchNorm1d(8), nn.Sigmoid(), nn.Dropout(0.2),
                         nn.Linear(8, 3))


def test_the_probe_on_a_bn_net_matches_a_step_by_step_computation_and_leaves_it_untouched():
    """Training mode (batch statistics, the same dropout mask at every point); model, .grad, buffers, modes and
    the RNG exactly as before."""
    model = _bn_mlp()
    x, y = torch.randn(10, 6), torch.arange(10) % 3
    model.eval()  # the probe must switch to training mode itself, and back
    model(x).sum().backward()  # some stale .grad the probe must not touch
    before, rng = _state(model), torch.random.get_rng_state()
    view = StepView(model=model, x=x, y=y, lr=0.1, step=5, loss=F.cross_entropy,
                    speed=SimpleNamespace(autocast=lambda: NO_CONTEXT, input=lambda t: t), data=None,
                    device=torch.device("cpu"), cfg=None)
    probe = Landscape()
    probe.measure(view)
    got = probe.values()
    after = _state(model)
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])
    assert all(torch.equal(b, a) for b, a in zip(before[1], after[1])) and before[2] == after[2]
    assert torch.equal(rng, torch.random.get_rng_state())

    def loss_and_grad(w_shift):
        m = copy.deepcopy(model).train()
        with torch.no_grad():
            for p, d in zip(m.parameters(), w_shift):
                p.sub_(d)
        torch.manual_seed(20181)
        loss = F.cross_entropy(m(x), y)
        loss.backward()
        return loss.item(), torch.cat([p.grad.reshape(-1) for p in m.parameters()])

    zero = [torch.zeros_like(p) for p in model.parameters()]
    loss0, g0 = loss_and_grad(zero)
    parts = torch.split(g0, [p.numel() for p in model.parameters()])
    losses, changes, betas = [loss0], [], []
    for m in STEP_MULTIPLES:
        eta = m * 0.1
        loss, g = loss_and_grad([eta * part.view(p.shape) for part, p in zip(parts, model.parameters())])
        losses.append(loss)
        changes.append((g - g0).norm().item())
        betas.append(changes[-1] / (eta * g0.norm().item()))
    assert got == pytest.approx({"landscape_loss_range": max(losses) - min(losses),
                                 "landscape_grad_change": max(changes), "landscape_beta": max(betas),
                                 "landscape_grad_norm": g0.norm().item()}, rel=1e-4)
    assert got["landscape_loss_range"] > 0 and got["landscape_beta"] > 0


def test_grad_norms_reads_the_gradient_the_training_step_left():
    """loop.train_step with the suite's optimizer (foreach SGD, momentum, weight decay): after the step, .grad is
    still the gradient at the weights before it, so the probe needs no extra pass."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 8), nn.Sigmoid(), nn.Linear(8, 8), nn.Sigmoid(), nn.Linear(8, 3))
    optim_cfg = OmegaConf.create(Optim(lr=0.5, weight_decay=0.01).model_dump())  # the schema's defaults otherwise
    optimizer = build_optimizer(optim_cfg, model)
    scheduler = build_schedule(OmegaConf.create(Schedule(name="constant").model_dump()), optimizer, 10)
    speed = Speed(OmegaConf.create({"trainer": Trainer().model_dump(), "model": {"name": "mlp"}}), torch.device("cpu"),
                  (6,))
    run = SimpleNamespace(speed=speed, train_model=model, model=model, smoothing=0.0, optimizer=optimizer,
                          scheduler=scheduler)
    probe = REGISTRY["grad_norms"](None, model)[0]
    assert isinstance(probe, GradNorms) and probe.keys() == ("gradnorm_l0", "gradnorm_l1", "gradnorm_l2")
    for step in range(3):  # momentum buffers exist from the second step on
        x, y = torch.randn(12, 6), torch.arange(12) % 3
        reference = copy.deepcopy(model)
        F.cross_entropy(reference(x), y).backward()
        want = [m.weight.grad.norm().item() for m in reference if isinstance(m, nn.Linear)]
        loop.train_step(run, x, y, NO_CONTEXT)
        assert not torch.equal(model[1].weight, reference[1].weight)  # the step moved the weights
        probe.measure(None)
        assert list(probe.values().values()) == pytest.approx(want, rel=1e-6)


def test_grad_norms_without_a_gradient_are_nan():
    probe = GradNorms(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)))
    probe.measure(None)
    assert set(probe.values()) == {"gradnorm_l0", "gradnorm_l1"} and all(math.isnan(v) for v in probe.values().values())


def test_a_run_with_both_probes_has_exactly_the_golden_numbers(tmp_path):
    """Noisy BN and dropout draw from the training RNG at every step: the line probe's passes (inside preserved,
    in a reseeded fork) and the gradient norms (reads only) must leave every number of the run as it was."""
    name = "mlp_noisy_bn"
    summary = train(compose_cfg(*COMMON, *RUNS[name], "trainer.probes=[percentiles,landscape,grad_norms]"),
                    run_dir=tmp_path)
    rows = _rows(tmp_path)
    new = ("landscape_", "gradnorm_l")
    assert all({"landscape_beta", "gradnorm_l0", "gradnorm_l3"} <= set(r) for r in rows)
    assert all(r["landscape_loss_range"] > 0 and r["landscape_beta"] > 0 and r["gradnorm_l0"] > 0 for r in rows)
    want = json.loads((GOLDEN / f"{name}.json").read_text())
    assert [{k: v for k, v in r.items() if not k.startswith(new)} for r in rows] == want["rows"]
    got = json.loads(json.dumps(_summary(summary)))
    got.pop(IDENTITY), want["summary"].pop(IDENTITY)
    assert got == want["summary"]
