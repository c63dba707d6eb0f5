"""C13's norms (wn, mean_only_bn, wn_mean_only_bn) and C14's probes (weight_norms, scale_invariance), checked
by hand; and a run with either changes no number of a golden run."""
from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnrepro.inference import fold_bn, precise_bn
from bnrepro.models import build_model
from bnrepro.models.mlp import MLP
from bnrepro.norm import Norm
from bnrepro.norm.pairs import FEEDING, norm_inputs, scale_invariant
from bnrepro.norm.weight import ChannelBias, MeanOnlyBatchNorm
from bnrepro.probes import StepView
from bnrepro.probes.scale_invariance import EXACT_EPS, scale_check
from bnrepro.probes.weight_norms import WeightNorms
from bnrepro.train import train
from conftest import compose_cfg
from test_golden_loop import COMMON, GOLDEN, IDENTITY, RUNS, _rows, _summary

torch.set_num_threads(1)
FAMILIES = {"mlp": ({}, (1, 8, 8)), "resnet_cifar": ({"depth": 8, "width": 8}, (3, 8, 8)),
            "resnet": ({"arch": "resnet18"}, (3, 32, 32)), "inception_bn": ({"width_mult": 0.125}, (3, 32, 32)),
            "inception": ({"width_mult": 0.125, "lrn": False}, (3, 32, 32))}


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 3 + 1


@pytest.mark.parametrize("shape", [(8, 6), (8, 6, 3, 3)])
def test_mean_only_bn_subtracts_the_batch_mean_in_training_and_the_running_mean_in_eval(shape):
    layer = MeanOnlyBatchNorm(6, momentum=0.1)
    with torch.no_grad():
        layer.bias.copy_(torch.linspace(-1, 1, 6))
    view = (1, 6) + (1,) * (len(shape) - 2)
    dims = [0] + list(range(2, len(shape)))
    x = randn(*shape)
    mean = x.mean(dims)
    y = layer(x)
    torch.testing.assert_close(y, x - mean.reshape(view) + layer.bias.reshape(view), rtol=0, atol=1e-6)
    torch.testing.assert_close(layer.running_mean, 0.1 * mean)  # (1 - 0.1) * 0 + 0.1 * mean
    assert torch.equal(layer.running_var, torch.ones(6)) and int(layer.num_batches_tracked) == 1
    x2 = randn(*shape, seed=1)
    layer(x2)
    torch.testing.assert_close(layer.running_mean, 0.9 * 0.1 * mean + 0.1 * x2.mean(dims))
    layer.eval()
    x3 = randn(*shape, seed=2)
    torch.testing.assert_close(layer(x3), x3 - layer.running_mean.reshape(view) + layer.bias.reshape(view),
                               rtol=0, atol=1e-6)
    # no scale, no division: the variance of the input passes through
    layer.train()
    assert torch.allclose(layer(x).var(dims), x.var(dims), rtol=1e-5)
    # the gradient flows through the batch mean: d sum(y * c) / dx = c - mean(c) over the batch
    xg = x.clone().requires_grad_()
    c = randn(*shape, seed=3)
    (layer(xg) * c).sum().backward()
    m = x[0, 0].numel() * shape[0]
    torch.testing.assert_close(xg.grad, c - c.sum(dims, keepdim=True) / m)
    assert [n for n, _ in layer.named_parameters()] == ["bias"]


def test_channel_bias_adds_its_bias_per_channel():
    layer = ChannelBias(3)
    with torch.no_grad():
        layer.bias.copy_(torch.tensor([1.0, -2.0, 0.5]))
    x = randn(4, 3, 2, 2)
    torch.testing.assert_close(layer(x), x + torch.tensor([1.0, -2.0, 0.5]).reshape(1, 3, 1, 1))


@pytest.mark.parametrize("kind", ["wn", "wn_mean_only_bn"])
def test_weight_norm_reparameterizes_the_layer_before_each_norm_as_g_v_over_norm_v(kind):
    torch.manual_seed(0)
    raw = MLP((1, 8, 8), 10, Norm(kind))  # the model before Norm.finish: plain linear layers
    model = Norm(kind).finish(copy.deepcopy(raw))
    x = randn(5, 1, 8, 8)
    # at initialization (g = ||v||) the reparameterized net computes what the plain one does
    torch.testing.assert_close(model(x), raw(x), rtol=1e-5, atol=1e-6)
    assert type(model[2]) is (ChannelBias if kind == "wn" else MeanOnlyBatchNorm)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    hidden, head = linears[:-1], linears[-1]
    assert all(hasattr(m, "parametrizations") for m in hidden) and not hasattr(head, "parametrizations")
    for layer in hidden:
        g, v = layer.parametrizations.weight.original0, layer.parametrizations.weight.original1
        assert g.shape == (layer.out_features, 1)
        torch.testing.assert_close(g.squeeze(1), v.norm(dim=1))  # g starts at ||v||
        with torch.no_grad():
            g.mul_(torch.linspace(0.5, 2.0, layer.out_features)[:, None])
        by_hand = g * v / v.norm(dim=1, keepdim=True)
        torch.testing.assert_close(layer.weight, by_hand, rtol=1e-6, atol=1e-7)
        # the row norms of w are g: length and direction decoupled
        torch.testing.assert_close(layer.weight.norm(dim=1), g.squeeze(1))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_the_layer_paired_with_each_norm_is_the_one_whose_output_it_normalizes(family):
    """norm_inputs pairs by registration order; the data flow of a forward pass must agree, for every family."""
    kw, shape = FAMILIES[family]
    model = build_model({"name": family, "norm": "bn", **kw}, shape, 10).eval()
    produced, consumed, handles = {}, {}, []
    for m in model.modules():
        if isinstance(m, FEEDING):
            handles.append(m.register_forward_hook(lambda mod, i, o: produced.__setitem__(id(o), mod)))
        elif scale_invariant(m):
            handles.append(m.register_forward_hook(lambda mod, i, o: consumed.__setitem__(mod, id(i[0]))))
    model(torch.zeros(2, *shape))
    for h in handles:
        h.remove()
    pairs = norm_inputs(model, scale_invariant)
    assert len(pairs) == len(consumed) > 0
    for _, layer, norm in pairs:
        assert produced[consumed[norm]] is layer


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("kind", ["wn", "mean_only_bn", "wn_mean_only_bn"])
def test_every_family_builds_trains_and_folds_with_the_new_norms(family, kind):
    kw, shape = FAMILIES[family]
    model = build_model({"name": family, "norm": kind, **kw}, shape, 10)
    x = randn(4, *shape)
    model(x).square().mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    n_norms = sum(isinstance(m, (ChannelBias, MeanOnlyBatchNorm)) for m in model.modules())
    n_wn = sum(hasattr(m, "parametrizations") for m in model.modules())
    assert n_norms > 0 and n_wn == (n_norms if kind.startswith("wn") else 0)
    model.eval()
    torch.testing.assert_close(fold_bn(model)(x), model(x), rtol=1e-4, atol=1e-4)


def test_precise_bn_recomputes_the_mean_only_and_keeps_folding_exact():
    torch.manual_seed(0)
    model = build_model({"name": "mlp", "norm": "mean_only_bn"}, (1, 8, 8), 10)
    batches = [randn(20, 1, 8, 8, seed=s) for s in range(3)]
    precise_bn(model, batches, 60)
    layer = model[2]
    first = model[1](model[0](torch.cat(batches)))
    torch.testing.assert_close(layer.running_mean, first.mean(0).detach(), rtol=1e-5, atol=1e-5)
    assert torch.equal(layer.running_var, torch.ones(100))
    model.eval()
    torch.testing.assert_close(fold_bn(model)(batches[0]), model(batches[0]), rtol=1e-5, atol=1e-5)


def tiny_bn_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 4, bias=False), nn.BatchNorm1d(4, eps=EXACT_EPS), nn.Sigmoid(),
                         nn.Linear(4, 3, bias=False), nn.BatchNorm1d(3, eps=EXACT_EPS), nn.Sigmoid(), nn.Linear(3, 2))


def test_scaling_a_bn_ed_layer_by_a_leaves_the_output_and_divides_the_gradient_by_a_exactly():
    """The paper's section 3.3 by hand on a tiny BN net in float64: f(aW) = f(W), dL/d(aW) = dL/dW / a."""
    net = tiny_bn_net().double()
    x, y = randn(16, 5).double(), torch.arange(16) % 2
    w = net[0].weight

    def run():
        net.zero_grad()
        out = net(x)
        F.cross_entropy(out, y).backward()
        return out.detach(), w.grad.clone()

    out1, g1 = run()
    original = w.detach().clone()
    for a in (0.5, 2.0, 10.0):
        with torch.no_grad():
            w.copy_(a * original)
        out_a, g_a = run()
        torch.testing.assert_close(out_a, out1, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(g_a, g1 / a, rtol=1e-10, atol=1e-14)
    with torch.no_grad():
        w.copy_(original)
    # the probe's measurement on the same net: at float64 rounding, and it leaves the net untouched
    before = {k: v.clone() for k, v in net.state_dict().items()}
    row = scale_check(net, x.float(), y, F.cross_entropy)
    assert row["layers"] == 2 and row["out_max"] < 1e-12 and row["grad_max"] < 1e-10
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    # without BN the identity fails, and the check says so
    plain = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Sigmoid(), nn.Linear(4, 2))
    assert scale_check(plain, x.float(), y, F.cross_entropy)["out_max"] < 1e-12
    with_eps = scale_check(plain, x.float(), y, F.cross_entropy, dtype=torch.float32, exact=False)
    assert with_eps["out_max"] > 0


def test_weight_norm_probe_logs_norm_and_lr_over_norm_squared_of_the_bn_ed_layers():
    net = tiny_bn_net()
    probe = WeightNorms(net)
    assert [name for name, _ in probe.layers] == ["0", "3"]  # not the classifier, which no BN follows
    assert probe.keys() == ("wnorm_0", "eff_lr_0", "wnorm_1", "eff_lr_1")
    view = StepView(net, torch.zeros(2, 5), torch.zeros(2), 0.3, 7, F.cross_entropy, None, None, "cpu", None)
    probe.measure(view)
    got = probe.values()
    for i, layer in enumerate((net[0], net[3])):
        norm = sum(float(v) ** 2 for v in layer.weight.detach().flatten()) ** 0.5
        assert got[f"wnorm_{i}"] == pytest.approx(norm, rel=1e-6)
        assert got[f"eff_lr_{i}"] == pytest.approx(0.3 / norm ** 2, rel=1e-6)
    assert probe.at_start(view) == got


def test_c14_probes_change_no_number_of_a_golden_run(tmp_path):
    """mlp_noisy_bn (noise and dropout draw from the training RNG at each step) with both probes: every golden
    row and summary value unchanged; the step-0 row holds the initial norms; end_probes the scale check."""
    name = "mlp_noisy_bn"
    cfg = compose_cfg(*COMMON, *RUNS[name], "trainer.probes=[percentiles,weight_norms,scale_invariance]")
    summary = train(cfg, run_dir=tmp_path)
    rows = _rows(tmp_path)
    new = {f"{k}_{i}" for i in range(3) for k in ("wnorm", "eff_lr")}
    assert rows[0]["step"] == 0 and set(rows[0]) == {"step"} | new
    want = json.loads((GOLDEN / f"{name}.json").read_text())
    assert [{k: v for k, v in r.items() if k not in new} for r in rows[1:]] == want["rows"]
    got = json.loads(json.dumps(_summary(summary)))
    end = got.pop("end_probes")
    assert end["si_layers"] == 3 and end["si_out_max"] < 1e-10 and end["si_grad_max"] < 1e-8
    assert {"si_out_a0.5", "si_grad_a10", "si_as_trained_out_max"} <= set(end)
    want["summary"].pop(IDENTITY), got.pop(IDENTITY)
    assert got == want["summary"]


@pytest.mark.parametrize("kind", ["wn", "mean_only_bn", "wn_mean_only_bn"])
def test_a_run_trains_with_each_new_norm(tmp_path, kind):
    summary = train(compose_cfg(*COMMON, "trainer.max_steps=20", "trainer.eval_every=10", f"model.norm={kind}",
                                "trainer.final_eval=[ema,precise,batch]"), run_dir=tmp_path)
    assert summary["status"] == "completed" and 0 < summary["final_acc"] <= 1
    assert Norm(kind).enabled and Norm(kind).weight_norm == kind.startswith("wn")


@pytest.mark.parametrize("scale", ["cpu", "cifar", "imagenet"])
def test_c14_runs_the_bn_net_with_and_without_weight_decay_at_a_constant_lr_with_its_probes(scale):
    cfg = compose_cfg("experiment=c14_scale_invariance", f"scale={scale}")
    assert cfg.model.norm == "bn" and cfg.schedule.name == "constant" and cfg.schedule.warmup_frac == 0
    assert list(cfg.trainer.probes) == ["weight_norms", "scale_invariance"] and cfg.optim.wd_exempt_norm_bias
    arms = str(cfg.claim_params.c14_arms).split(",")
    assert arms[:2] == ["no_wd", "wd"] and set(arms) <= {"no_wd", "wd", "matched"} and cfg.optim.weight_decay == 0
    wd = cfg.claim_params.c14_weight_decay
    assert wd > 0
    # the rule's "settles" needs ||w||^2 to relax within the first half: rate 2 lr wd / (1 - momentum) per step
    rate = 2 * cfg.optim.lr * wd / (1 - cfg.optim.momentum)
    assert rate * cfg.trainer.max_steps / 2 >= 5
