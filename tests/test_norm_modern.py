"""The norms proposed after 2018 (FRN + TLU, EvoNorm-S0 and -B0 from timm; RMSNorm from its paper) against their
papers' formulas, written out here, on every input rank bnrepro's nets give them."""
import pytest
import torch
import torch.nn.functional as F

from bnrepro.norm import Norm
from bnrepro.norm.frn import EPS as FRN_EPS

torch.set_num_threads(1)
SHAPES = [(6, 8), (6, 8, 5), (6, 8, 3, 4)]


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 2 + 0.5


def build(name, shape, **options):
    layer = Norm(name, **options)(shape[1], dim=2 if len(shape) == 4 else 1)
    with torch.no_grad():  # affine parameters off their init, so a formula that ignores one is caught
        for pname, p in layer.named_parameters():
            p.copy_(torch.linspace(-0.7, 1.3, p.numel()).view_as(p))
    return layer


def per_channel(p, x):
    return p.view(1, -1, *(1,) * (x.dim() - 2))


@pytest.mark.parametrize("shape", SHAPES)
def test_frn_tlu_is_the_papers_formula(shape):
    x = randn(*shape)
    layer = build("frn", shape)
    inner = layer.layer
    positions = tuple(range(2, x.dim()))
    nu2 = x.pow(2).mean(dim=positions, keepdim=True) if positions else x.pow(2)
    y = per_channel(inner.weight, x) * x / torch.sqrt(nu2 + FRN_EPS) + per_channel(inner.bias, x)
    expected = torch.maximum(y, per_channel(inner.tau, x))
    torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize("shape", SHAPES)
def test_evonorm_s0_is_the_papers_formula(shape):
    x = randn(*shape, seed=1)
    layer = build("evonorm_s0", shape, norm_groups=4)
    inner = layer.layer
    n, c = x.shape[:2]
    grouped = x.reshape(n, 4, -1)
    std = torch.sqrt(grouped.var(dim=2, unbiased=False, keepdim=True) + inner.eps)
    std = std.expand(n, 4, grouped.shape[2]).reshape(x.shape)
    expected = (x * torch.sigmoid(per_channel(inner.v, x) * x) / std * per_channel(inner.weight, x)
                + per_channel(inner.bias, x))
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_evonorm_b0_is_the_papers_formula_in_training_and_at_inference(shape):
    x = randn(*shape, seed=2)
    layer = build("evonorm_b0", shape)
    inner = layer.layer
    dims = (0, *range(2, x.dim()))
    positions = tuple(range(2, x.dim()))
    batch_var = x.var(dim=dims, unbiased=False, keepdim=True)
    inst_var = x.var(dim=positions, unbiased=False, keepdim=True) if positions else torch.zeros_like(x)
    v, g, b = (per_channel(p, x) for p in (inner.v, inner.weight, inner.bias))

    def formula(var):
        return x / torch.maximum(torch.sqrt(var + inner.eps), v * x + torch.sqrt(inst_var + inner.eps)) * g + b

    torch.testing.assert_close(layer(x), formula(batch_var), rtol=1e-5, atol=1e-5)
    m = x.numel() / x.shape[1]  # the running variance: unbiased, momentum 0.1 from 1
    running = 0.9 + 0.1 * batch_var.flatten() * m / (m - 1)
    torch.testing.assert_close(inner.running_var, running)
    layer.eval()
    torch.testing.assert_close(layer(x), formula(per_channel(running, x)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_rmsnorm_is_the_papers_formula(shape):
    x = randn(*shape, seed=3)
    layer = build("rmsnorm", shape)
    rms = torch.sqrt(x.pow(2).flatten(1).mean(1) + 1e-5).view(-1, *(1,) * (x.dim() - 1))
    expected = x / rms * per_channel(layer.weight, x) + per_channel(layer.bias, x)
    torch.testing.assert_close(layer(x), expected)
    if x.dim() == 2:  # on features it is torch's own rms_norm (plus the paper's bias)
        torch.testing.assert_close(layer(x), F.rms_norm(x, (x.shape[1],), layer.weight, 1e-5) + layer.bias)


@pytest.mark.parametrize("name", ["frn", "evonorm_s0", "evonorm_b0", "rmsnorm"])
def test_gradients_flow_to_every_parameter(name):
    shape = (4, 8, 3, 3)
    layer = build(name, shape, norm_groups=4)
    x = randn(*shape).requires_grad_()
    layer(x).pow(2).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for pname, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname
