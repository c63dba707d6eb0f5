"""C16's probe (bnrepro/probes/ics.py) against the closed form on a two-layer linear net, where G' is known."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bnrepro.probes import preserved
from bnrepro.probes.ics import layer_weights, sgd_update, shift

@pytest.fixture(autouse=True)
def float64():
    """This module's nets in float64: the closed form is compared to 1e-9."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def two_layer(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(5, 4, bias=False), nn.Linear(4, 3, bias=False))
    x, y = torch.randn(7, 5), torch.randn(7, 3)
    return net, x, y


def closed_form(w1, w2, x, y, step1):
    """L = 0.5 ||x W1^T W2^T - y||^2: dL/dW2 = r^T (x W1^T), r = x W1^T W2^T - y; G' replaces W1 by W1 + step1."""
    def g2(a):
        h = x @ a.T
        return (h @ w2.T - y).T @ h
    return g2(w1), g2(w1 + step1)


def loss_fn(x, y):
    return lambda model: 0.5 * ((model(x) - y) ** 2).sum()


@pytest.mark.parametrize("momentum,nesterov,wd", [(0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 1e-2)])
def test_the_probe_equals_the_closed_form_of_a_two_layer_linear_net(momentum, nesterov, wd):
    net, x, y = two_layer()
    lr = 0.05
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=wd)
    for _ in range(2):  # a momentum buffer to read
        opt.zero_grad()
        loss_fn(x, y)(net).backward()
        opt.step()
    w1, w2 = (m.weight.detach().clone() for m in net)
    # the update of W1 SGD would make now, by its formula: d = g + wd w, buf = mu buf + d, step = -lr (buf or d + mu buf)
    r = x @ w1.T @ w2.T - y
    g1 = (r @ w2).T @ x + wd * w1
    buf = momentum * opt.state[net[0].weight]["momentum_buffer"] + g1 if momentum else g1
    step1 = -lr * ((g1 + momentum * buf) if nesterov else buf)
    G, G2 = closed_form(w1, w2, x, y, step1)
    got = shift(net, loss_fn(x, y), lr, opt)
    diff = (G - G2).norm().item()
    assert got["ics_l2_2"] == pytest.approx(diff, rel=1e-9)
    assert got["ics_rel_2"] == pytest.approx(diff / G.norm().item(), rel=1e-9)
    cos = (G * G2).sum().item() / (G.norm().item() * G2.norm().item())
    assert got["ics_cos_2"] == pytest.approx(cos, rel=1e-9)
    assert diff > 1e-3 and cos < 1 - 1e-6  # a real shift, not a trivial zero
    assert set(got) == {"ics_l2_2", "ics_rel_2", "ics_cos_2"}  # the first layer has nothing before it
    # the probe changed nothing: weights and the optimizer's buffer
    assert torch.equal(net[0].weight, w1) and torch.equal(net[1].weight, w2)


def test_without_an_optimizer_the_update_is_a_plain_gradient_step():
    net, x, y = two_layer(1)
    params = list(net.parameters())
    grads = torch.autograd.grad(loss_fn(x, y)(net), params)
    assert all(torch.equal(s, -0.1 * g) for s, g in zip(sgd_update(None, params, grads, 0.1), grads))


def test_a_layer_after_a_frozen_one_sees_no_shift_and_a_deeper_net_has_a_key_per_layer():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 2))
    x, y = torch.randn(9, 5), torch.randn(9, 2)
    got = shift(net, loss_fn(x, y), 0.0, None)  # lr 0: no layer moves
    assert sorted(got) == sorted(f"ics_{m}_{i}" for i in (2, 3) for m in ("l2", "cos", "rel"))
    assert got["ics_l2_2"] == 0 and got["ics_l2_3"] == 0
    assert got["ics_cos_3"] == pytest.approx(1.0)
    assert len(layer_weights(net)) == 3


def test_a_batch_norm_net_is_probed_in_training_mode_and_left_as_it_was():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 6, bias=False), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2))
    x, y = torch.randn(16, 5), torch.randn(16, 2)
    net.eval()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    with preserved(net) as model:
        model.train()
        got = shift(model, loss_fn(x, y), 0.1, None)
    assert math.isfinite(got["ics_l2_2"]) and got["ics_l2_2"] > 0
    assert not net.training
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())


@pytest.mark.parametrize("name", ["mlp_noisy_bn", "resnet8"])
def test_a_run_with_the_probe_has_exactly_the_golden_numbers(tmp_path, name):
    """The probe's passes (inside preserved, in a reseeded fork; the optimizer only read) leave every number of
    the run as it was: noisy BN draws from the training RNG at every step."""
    import json

    from bnrepro.train import train
    from conftest import compose_cfg
    from test_golden_loop import COMMON, GOLDEN, IDENTITY, RUNS, _rows, _summary

    torch.set_default_dtype(torch.float32)  # the run's own dtype, as in the golden file
    summary = train(compose_cfg(*COMMON, *RUNS[name], "trainer.probes=[percentiles,ics]"), run_dir=tmp_path)
    rows = _rows(tmp_path)
    assert all({"ics_l2_2", "ics_cos_4", "ics_rel_3"} <= set(r) for r in rows)
    assert all(r["ics_l2_2"] > 0 and -1 <= r["ics_cos_4"] <= 1 for r in rows)
    want = json.loads((GOLDEN / f"{name}.json").read_text())
    assert [{k: v for k, v in r.items() if not k.startswith("ics_")} for r in rows] == want["rows"]
    got = json.loads(json.dumps(_summary(summary)))
    got.pop(IDENTITY), want["summary"].pop(IDENTITY)
    assert got == want["summary"]
