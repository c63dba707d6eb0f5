"""model.norm_position (C17): pre = linear/conv -> norm -> nonlinearity (the paper's), post = linear/conv ->
nonlinearity -> norm, in every model family. Checked on the tensors that flow between modules in a forward pass
(which module's output is which module's input), not on module names."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from bnrepro import ConfigError
from bnrepro.models import MODELS, build_model, model_config
from bnrepro.models.common import ACTIVATIONS
from bnrepro.norm import Norm

SHAPES = {"mlp": (1, 8, 8), "resnet_cifar": (1, 40), "resnet": (3, 32, 32), "inception_bn": (1, 8, 8),
          "inception": (1, 8, 8)}
EXTRA = {"resnet": {"arch": "resnet18"}, "resnet_cifar": {"depth": 8, "width": 8}, "inception_bn": {"width_mult": 0.25},
         "inception": {"width_mult": 0.25, "lrn": False}}
LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)


def flow(name: str, position: str, act: str = "relu", norm: str = "bn"):
    """(edges, model): edges = [(producer kind, consumer kind, producer)] for every pair of modules where one's
    output tensor is the other's input, kinds "layer", "norm", "act"."""
    cfg = {**model_config(name), **EXTRA.get(name, {}), "norm": norm, "norm_position": position, "act": act}
    torch.manual_seed(0)
    model = build_model(cfg, SHAPES[name], 10)
    norm_types = tuple(type(Norm(norm)(4, dim=1)).__mro__[:1]) + tuple(type(Norm(norm)(4, dim=2)).__mro__[:1])
    kinds = {}
    for m in model.modules():
        if isinstance(m, LAYERS):
            kinds[m] = "layer"
        elif isinstance(m, norm_types):
            kinds[m] = "norm"
        elif isinstance(m, tuple(ACTIVATIONS.values())):
            kinds[m] = "act"
    outputs, edges = {}, []

    def hook(m, inp, out):
        src, value = outputs.get(id(inp[0]), (None, None))
        if src is not None and torch.equal(inp[0], value):  # not a tensor changed in place since (timm's x += sc)
            edges.append((kinds[src], kinds[m], src))
        outputs[id(out)] = (m, out.clone())

    handles = [m.register_forward_hook(hook) for m in kinds]
    try:
        with torch.no_grad():
            model.train()(torch.randn(4, *SHAPES[name]))
    finally:
        for h in handles:
            h.remove()
    return edges, model


def count(edges, a, b):
    return sum(1 for src, dst, _ in edges if (src, dst) == (a, b))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_post_puts_every_norm_before_a_nonlinearity_after_it(name):
    pre, _ = flow(name, "pre")
    post, _ = flow(name, "post")
    moved = count(pre, "norm", "act")
    assert moved > 0, "the family has no norm before a nonlinearity in the paper's order"
    assert count(pre, "act", "norm") == 0
    assert count(post, "norm", "act") == 0          # no norm feeds a nonlinearity any more
    assert count(post, "act", "norm") == moved      # every one of them now reads a nonlinearity's output
    assert count(post, "layer", "act") == moved     # and the layer under it feeds the nonlinearity directly
    # a norm no nonlinearity follows (a residual branch's last, before the sum) stays where it was
    assert count(post, "layer", "norm") == count(pre, "layer", "norm") - moved


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_layer_keeps_its_bias_only_where_no_norm_follows_it(name):
    for position in ("pre", "post"):
        edges, _ = flow(name, position)
        for src, dst, layer in edges:
            if src == "layer" and dst == "norm":
                assert layer.bias is None, (position, layer)
            if src == "layer" and dst == "act" and position == "post":
                assert layer.bias is not None, layer


def test_post_trains_a_different_net_and_pre_is_the_default():
    x = torch.randn(8, 1, 8, 8)
    outs = {}
    for position in (None, "pre", "post"):
        cfg = {**model_config("mlp"), "act": "relu", "norm_position": position}
        torch.manual_seed(0)
        outs[position] = build_model(cfg, (1, 8, 8), 10).train()(x)
    assert torch.equal(outs[None], outs["pre"])
    assert not torch.allclose(outs["pre"], outs["post"])


def test_sigmoid_post_normalizes_the_sigmoid_outputs():
    _, model = flow("mlp", "post", act="sigmoid")
    seen = {}
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm1d))
    bn.register_forward_hook(lambda m, i, o: seen.update(i=i[0], o=o))
    model.train()(torch.randn(64, 1, 8, 8))
    assert seen["i"].min() >= 0 and seen["i"].max() <= 1  # a sigmoid's output goes in
    torch.testing.assert_close(seen["o"].mean(0), torch.zeros(100), atol=1e-5, rtol=0)


@pytest.mark.parametrize("norm", ["wn", "wn_mean_only_bn"])
def test_weight_norm_has_no_post_position(norm):
    with pytest.raises(ConfigError, match="norm_position=pre"):
        Norm(norm, norm_position="post")


def test_an_unknown_position_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match="pre|post"):
        Norm("bn", norm_position="after")
