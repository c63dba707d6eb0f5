"""Optimizer options and the learning-rate schedules' values at given steps."""
from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from bnrepro import ConfigError
from bnrepro.optim import build_optimizer, build_schedule, effective_lr
from bnrepro.schema import Optim
from conftest import compose_cfg


def optim_cfg(**kw):
    """The optimizer's config as a run gets it: every key's default (bnrepro.schema.Optim), kw set (unchecked:
    some tests give what the door would refuse)."""
    return OmegaConf.create({**Optim().model_dump(), **kw})


def schedule_cfg(spec: dict):
    """configs/schedule/<name>.yaml as a run composes it, with the other keys of spec set."""
    name = spec["name"] if spec["name"] in ("constant", "step", "exponential", "cosine") else "constant"
    return OmegaConf.merge(compose_cfg(f"schedule={name}").schedule, spec)


def bn_net():
    return nn.Sequential(nn.Linear(4, 8, bias=False), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))


def lrs(spec, max_steps, lr=1.0):
    opt = build_optimizer(optim_cfg(lr=lr), bn_net())
    sched = build_schedule(schedule_cfg(spec), opt, max_steps)
    out = []
    for _ in range(max_steps):
        out.append(opt.param_groups[0]["lr"])  # the rate used by this step
        opt.step()
        sched.step()
    return out


def test_lr_mult_and_linear_scaling():
    assert effective_lr(optim_cfg(lr=0.01, lr_mult=30)) == pytest.approx(0.3)
    assert effective_lr(optim_cfg(lr=0.1, scale_lr_by_batch=True), batch_size=1024) == pytest.approx(0.4)
    assert effective_lr(optim_cfg(lr=0.1, scale_lr_by_batch=False), batch_size=1024) == pytest.approx(0.1)
    opt = build_optimizer(optim_cfg(lr=0.1, scale_lr_by_batch=True), bn_net(), batch_size=64)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.025)
    with pytest.raises(ConfigError, match="positive"):
        effective_lr(optim_cfg(lr=0.0))


def test_weight_decay_exempts_norm_and_bias():
    net = bn_net()
    opt = build_optimizer(optim_cfg(weight_decay=5e-4, wd_exempt_norm_bias=True), net)
    decayed, exempt = opt.param_groups
    assert decayed["weight_decay"] == 5e-4 and exempt["weight_decay"] == 0.0
    assert {id(p) for p in decayed["params"]} == {id(net[0].weight), id(net[3].weight)}
    assert {id(p) for p in exempt["params"]} == {id(net[1].weight), id(net[1].bias), id(net[3].bias)}
    # the BN scale is not shrunk by a step with zero gradient; the weights are
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    gamma, w = net[1].weight.detach().clone(), net[0].weight.detach().clone()
    opt.step()
    assert torch.equal(net[1].weight, gamma) and not torch.equal(net[0].weight, w)
    assert len(build_optimizer(optim_cfg(weight_decay=5e-4), net).param_groups) == 1


def test_nesterov():
    opt = build_optimizer(optim_cfg(nesterov=True), bn_net())
    assert opt.param_groups[0]["nesterov"] and opt.param_groups[0]["momentum"] == 0.9
    with pytest.raises(ConfigError, match="nesterov"):
        build_optimizer(optim_cfg(nesterov=True, momentum=0.0), bn_net())


def test_constant_schedule():
    assert lrs({"name": "constant"}, 5, lr=0.3) == [0.3] * 5


def test_step_schedule():
    out = lrs({"name": "step", "milestones_frac": [0.5, 0.75], "gamma": 0.1}, 8)
    assert out == pytest.approx([1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01])


def test_exponential_schedule_and_speedup():
    cfg = {"name": "exponential", "decay_rate": 0.5, "decay_every_frac": 0.25}
    out = lrs(cfg, 8)  # period 2 steps: lr = 0.5 ** (step / 2)
    assert out == pytest.approx([0.5 ** (s / 2) for s in range(8)])
    faster = lrs({**cfg, "decay_speedup": 2.0}, 8)  # "6x faster" is the same change with 6
    assert faster == pytest.approx([0.5 ** s for s in range(8)])
    stairs = lrs({**cfg, "staircase": True}, 8)
    assert stairs == pytest.approx([1, 1, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125])


def test_cosine_schedule():
    out = lrs({"name": "cosine", "min_lr_frac": 0.1}, 11)
    expect = [0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / 11)) for s in range(11)]
    assert out == pytest.approx(expect, abs=1e-6)


def test_warmup_in_front_of_any_schedule():
    out = lrs({"name": "cosine", "warmup_frac": 0.25, "warmup_start_factor": 0.25}, 12)
    assert out[:3] == pytest.approx([0.25, 0.5, 0.75])  # linear ramp over 3 steps
    assert out[3] == pytest.approx(1.0)  # then the cosine from the full rate
    assert out[3:] == pytest.approx([0.5 * (1 + math.cos(math.pi * s / 9)) for s in range(9)], abs=1e-6)
    step = lrs({"name": "step", "milestones_frac": [0.5], "gamma": 0.1, "warmup_frac": 0.2,
                "warmup_start_factor": 0.5}, 10)
    assert step == pytest.approx([0.5, 0.75, 1, 1, 1, 1, 0.1, 0.1, 0.1, 0.1])


def test_schedule_state_resumes():
    cfg = schedule_cfg({"name": "cosine", "warmup_frac": 0.2})
    a_opt = build_optimizer(optim_cfg(lr=1.0), bn_net())
    a = build_schedule(cfg, a_opt, 20)
    for _ in range(7):
        a_opt.step()
        a.step()
    b_opt = build_optimizer(optim_cfg(lr=1.0), bn_net())
    b = build_schedule(cfg, b_opt, 20)
    b_opt.load_state_dict(a_opt.state_dict())
    b.load_state_dict(a.state_dict())
    for _ in range(10):
        a_opt.step(), a.step(), b_opt.step(), b.step()
        assert a_opt.param_groups[0]["lr"] == pytest.approx(b_opt.param_groups[0]["lr"])


def test_unknown_schedule():
    with pytest.raises(ConfigError, match="schedule=<constant"):
        lrs({"name": "poly"}, 3)
