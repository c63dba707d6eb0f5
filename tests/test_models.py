"""Every model family with every norm: golden sizes, gradients, the norm/bias rule, activations, bad config."""
import copy
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from bnrepro import ConfigError
from bnrepro.models import MODELS, build_model, count_params, model_config
from bnrepro.norm import NORMS
from conftest import compose_cfg

torch.set_num_threads(1)
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "model"
NORM_TYPES = (_BatchNorm, nn.GroupNorm, nn.LayerNorm, _InstanceNorm)
# the smallest member of each family on an input it is meant for, and norm groups that divide its widths
TINY = {
    "mlp": ({"name": "mlp", "norm_groups": 4}, (1, 8, 8)),
    "resnet_cifar": ({"name": "resnet_cifar", "depth": 8, "norm_groups": 8}, (3, 8, 8)),
    "resnet": ({"name": "resnet", "arch": "resnet18"}, (3, 64, 64)),
    "inception_bn": ({"name": "inception_bn", "width_mult": 0.25, "norm_groups": 8}, (1, 8, 8)),
    "inception": ({"name": "inception", "width_mult": 0.25, "norm_groups": 8}, (1, 8, 8)),
}


def tiny(family, **overrides):
    cfg, shape = TINY[family]
    torch.manual_seed(0)
    return build_model({**cfg, **overrides}, shape, 10), shape


def test_every_family_has_a_tiny_config():
    assert set(TINY) == set(MODELS)


@pytest.mark.parametrize(("cfg", "shape", "params"), [
    ({"name": "resnet_cifar", "depth": 20}, (3, 32, 32), 269_722),   # He et al.: 0.27M
    ({"name": "resnet_cifar", "depth": 56}, (3, 32, 32), 853_018),   # He et al.: 0.85M
    ({"name": "resnet_cifar", "depth": 110}, (3, 32, 32), 1_727_962),  # He et al.: 1.7M
    ({"name": "resnet", "arch": "resnet18"}, (3, 224, 224), 11_689_512),  # torchvision: 11.7M
    ({"name": "resnet", "arch": "resnet50"}, (3, 224, 224), 25_557_032),  # He et al. / torchvision: 25.6M
    # BN-Inception: the paper says 13.6M, but its own Fig. 5 rows (built here row by row, BN's gamma and beta
    # included) add up to 11.28M; the paper does not say what else its figure counts, and the table is not
    # self-consistent either (4c and 4d list 576 outputs where their rows sum to 608).
    ({"name": "inception_bn"}, (3, 224, 224), 11_278_528),
    # GoogLeNet layout without auxiliary classifiers; Szegedy et al. give about 6.8M without biases and head
    ({"name": "inception", "norm": "none"}, (3, 224, 224), 6_998_552),
])
def test_golden_parameter_counts(cfg, shape, params):
    assert count_params(build_model(cfg, shape, 10 if cfg["name"] == "resnet_cifar" else 1000)) == params


def test_the_configs_build_their_family():
    for path in sorted(CONFIGS.glob("*.yaml")):
        cfg = OmegaConf.create(model_config(path.stem))
        assert cfg.name == path.stem and cfg.name in MODELS
        assert cfg == compose_cfg(f"model={path.stem}").model  # what a run composes, shared norm keys included
        if cfg.name in TINY:
            model = build_model(OmegaConf.merge(cfg, TINY[cfg.name][0]), TINY[cfg.name][1], 10)
            assert count_params(model) > 0


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("family", list(TINY))
def test_forward_backward_with_every_norm(family, norm):
    if family == "mlp" and norm == "in":
        with pytest.raises(ConfigError, match="model.norm=ln or gn"):
            tiny(family, norm=norm)
        return
    model, shape = tiny(family, norm=norm, ghost_batch=2)
    out = model(torch.randn(4, *shape))
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    model.eval()
    assert torch.isfinite(model(torch.randn(2, *shape))).all()


@pytest.mark.parametrize("norm", [n for n in NORMS if n != "none"])
@pytest.mark.parametrize("family", ["mlp", "resnet_cifar"])
def test_every_norm_trains_under_bf16_autocast(family, norm):
    """The GPU speed path runs every norm under bf16 autocast: a step runs, gradients are finite and fp32, and
    the running statistics stay fp32 (the CPU's bf16 autocast; its kernels check dtypes as CUDA's do)."""
    if family == "mlp" and norm == "in":
        return  # refused at build (test above)
    model, shape = tiny(family, norm=norm, ghost_batch=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(4, *shape))
    assert torch.isfinite(out.float()).all()
    out.float().logsumexp(1).sum().backward()
    bad = [n for n, p in model.named_parameters() if p.grad is None or p.grad.dtype != torch.float32
           or not torch.isfinite(p.grad).all()]
    assert not bad
    assert all(b.dtype in (torch.float32, torch.int64) for b in model.buffers())


@pytest.mark.parametrize("family", list(TINY))
def test_none_has_no_norm_and_biased_layers(family):
    """With `none` no norm module remains and every layer keeps its bias; with a norm the layer feeding it has
    none. (inception's LRN is an architecture switch, model.lrn, not a norm; the depthwise half of the
    separable first conv feeds a pointwise conv, whose bias absorbs its own.)"""
    plain, _ = tiny(family, norm="none", lrn=False) if family.startswith("inception") else tiny(family, norm="none")
    assert not [m for m in plain.modules() if isinstance(m, NORM_TYPES)]
    layers = [m for m in plain.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and getattr(m, "groups", 1) == 1]
    assert layers and all(m.bias is not None for m in layers)
    normed, _ = tiny(family, norm="bn")
    biased = [m for m in normed.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None]
    assert biased == [list(normed.modules())[-1]]  # only the classifier
    assert len([m for m in normed.modules() if isinstance(m, _BatchNorm)]) == len(layers) - 1


@pytest.mark.parametrize("family", list(TINY))
@pytest.mark.parametrize("act", ["relu", "sigmoid"])
def test_activation_modules_follow_model_act(family, act):
    model, shape = tiny(family, act=act)
    acts = [m for m in model.modules() if isinstance(m, (nn.ReLU, nn.Sigmoid, nn.Tanh))]
    assert acts and all(type(m) is type(acts[0]) for m in acts)
    assert isinstance(acts[0], nn.Sigmoid if act == "sigmoid" else nn.ReLU)
    calls = []
    acts[-1].register_forward_hook(lambda m, i, o: calls.append(i[0].shape))
    model(torch.randn(2, *shape))
    assert len(calls) == 1  # the probe's hook on the last activation module fires once per forward


@pytest.mark.parametrize(("family", "shape", "spatial"), [
    ("inception_bn", (3, 224, 224), 7), ("inception_bn", (3, 32, 32), 8), ("inception_bn", (1, 8, 8), 2),
    ("inception", (3, 224, 224), 7), ("inception", (3, 32, 32), 8), ("inception", (1, 8, 8), 2),
])
def test_inception_stems_fit_the_input_size(family, shape, spatial):
    """auto picks the stem: 224 -> 7x7 before the global pooling as in Fig. 5, 32 -> 8x8, 8 -> 2x2."""
    model = build_model({"name": family, "width_mult": 0.125}, shape, 10).eval()
    seen = []
    model.pool.register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    with torch.no_grad():
        model(torch.randn(1, *shape))
    assert seen[0][2:] == (spatial, spatial)


def test_bn_inception_follows_fig5():
    model = build_model({"name": "inception_bn"}, (3, 224, 224), 1000)
    depthwise = model.stem[0]
    assert (depthwise.groups, depthwise.out_channels, depthwise.kernel_size, depthwise.stride) == (3, 24, (7, 7), (2, 2))
    outputs = {name: m.out_channels for name, m in model.named_children() if name.startswith("inception_")}
    assert outputs == {"inception_3a": 256, "inception_3b": 320, "inception_3c": 576, "inception_4a": 576,
                       "inception_4b": 576, "inception_4c": 608, "inception_4d": 608, "inception_4e": 1056,
                       "inception_5a": 1024, "inception_5b": 1024}
    assert isinstance(model.inception_3c.branches[-1], nn.MaxPool2d)  # pass-through: 160 + 96 + the input's 320
    pools = ["avg" if isinstance(p, nn.AvgPool2d) else "max" if isinstance(p, nn.MaxPool2d) else "?"
             for p in (m.branches[-1][0] if isinstance(m.branches[-1], nn.Sequential) else m.branches[-1]
                       for name, m in model.named_children() if name.startswith("inception_"))]
    assert pools == ["avg", "avg", "max"] + ["avg"] * 4 + ["max", "avg", "max"]
    assert not [m for m in model.modules() if isinstance(m, (nn.LocalResponseNorm, nn.Dropout))]


def test_padded_avg_pools_run_in_nchw_and_hand_back_channels_last(monkeypatch):
    """BN-Inception's pool branches call avg_pool2d on an NCHW tensor whatever the net's layout (CUDA's
    channels_last backward of a padded avg pool is wrong: pytorch/pytorch#188344), and hand channels_last back;
    gradients equal the NCHW net's (float64, where summation order is no excuse)."""
    import torch.nn.functional as F

    seen, avg_pool2d = [], F.avg_pool2d
    monkeypatch.setattr(F, "avg_pool2d", lambda x, *a, **k: seen.append(x.is_contiguous()) or avg_pool2d(x, *a, **k))
    torch.manual_seed(0)
    net = build_model({"name": "inception_bn", "width_mult": 0.25}, (3, 32, 32), 10).double()
    cl = copy.deepcopy(net).to(memory_format=torch.channels_last)
    x, y = torch.randn(4, 3, 32, 32, dtype=torch.float64), torch.randint(0, 10, (4,))
    pool = net.inception_3a.branches[-1][0]
    out = pool(x[:, :, :8, :8].contiguous(memory_format=torch.channels_last))
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    seen.clear()
    grads = []
    for model, inp in ((net, x), (cl, x.contiguous(memory_format=torch.channels_last))):
        nn.functional.cross_entropy(model(inp), y).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert len(seen) == 2 * 7 and all(seen)  # 7 avg-pool branches in Fig. 5, in each layout
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-9, atol=1e-12)


def test_to_channels_last_keeps_the_nchw_route_only_where_the_kernel_is_wrong(monkeypatch):
    """to_channels_last (the trainer's conversion) checks the device's channels_last padded avg-pool backward once:
    right (this CPU) -> BN-Inception's pools use it directly; wrong (pytorch/pytorch#188344 on CUDA) -> they keep
    the NCHW route. The check draws no random numbers, so a run's numbers do not depend on whether it ran."""
    import torch.nn.functional as F

    from bnrepro.models import inception, to_channels_last

    inception.channels_last_avg_pool_is_right.cache_clear()
    rng = torch.get_rng_state()
    assert inception.channels_last_avg_pool_is_right("cpu")
    assert torch.equal(torch.get_rng_state(), rng)

    def pools(net):
        return [m for m in net.modules() if isinstance(m, inception.AvgPool2dNCHW)]

    seen, avg_pool2d = [], F.avg_pool2d
    monkeypatch.setattr(F, "avg_pool2d", lambda x, *a, **k: seen.append(x.is_contiguous()) or avg_pool2d(x, *a, **k))
    x = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    net = to_channels_last(build_model({"name": "inception_bn", "width_mult": 0.25}, (3, 32, 32), 10))
    assert len(pools(net)) == 7 and not any(p.via_nchw for p in pools(net))
    net(x)
    assert seen == [False] * 7  # channels_last straight into torch's kernel
    monkeypatch.setattr(inception, "channels_last_avg_pool_is_right", lambda device_type: False)
    net = to_channels_last(build_model({"name": "inception_bn", "width_mult": 0.25}, (3, 32, 32), 10))
    assert all(p.via_nchw for p in pools(net))
    seen.clear()
    net(x)
    assert seen == [True] * 7
    resnet = build_model({"name": "resnet_cifar", "depth": 8}, (3, 32, 32), 10)
    assert next(to_channels_last(resnet).parameters()).is_contiguous(memory_format=torch.channels_last)


def test_inception_baseline_has_5x5_lrn_and_dropout():
    model = build_model({"name": "inception"}, (3, 224, 224), 1000)
    kernels = {m.kernel_size for m in model.modules() if isinstance(m, nn.Conv2d)}
    assert (5, 5) in kernels and len([m for m in model.modules() if isinstance(m, nn.LocalResponseNorm)]) == 2
    assert model.dropout.p == 0.4
    off = build_model({"name": "inception", "lrn": False, "dropout": 0.0}, (3, 224, 224), 1000)
    assert not [m for m in off.modules() if isinstance(m, (nn.LocalResponseNorm, nn.Dropout))]


@pytest.mark.parametrize(("family", "norm"), [("resnet_cifar", "bn"), ("resnet_cifar", "none"), ("resnet", "bn"),
                                              ("resnet", "gn"), ("resnet", "none")])
def test_zero_init_residual_starts_every_branch_at_zero(family, norm):
    """With every residual branch at zero each block passes its shortcut on: block(x) = act(shortcut(x))."""
    model, shape = tiny(family, norm=norm, zero_init_residual=True)
    blocks = [m for m in model.modules() if type(m).__name__ in ("BasicBlock", "Bottleneck")]
    seen = {}
    for block in blocks:
        block.register_forward_hook(lambda m, i, o: seen.update({m: (i[0], o)}))
    model(torch.randn(2, *shape))
    same_shape = [b for b in blocks if seen[b][0].shape == seen[b][1].shape]
    assert same_shape
    for block in same_shape:
        inp, out = seen[block]
        torch.testing.assert_close(out, torch.relu(inp))


@pytest.mark.parametrize("family", ["resnet_cifar", "resnet", "inception_bn"])
def test_init_scale_multiplies_the_default_init(family):
    base, _ = tiny(family, init_scale=1.0)
    scaled, _ = tiny(family, init_scale=10.0)
    for (name, a), b in zip(base.named_modules(), scaled.modules()):
        if isinstance(a, (nn.Conv2d, nn.Linear)):
            torch.testing.assert_close(b.weight, 10 * a.weight, msg=name)


@pytest.mark.parametrize(("init", "act", "std"), [
    ("normal", "sigmoid", lambda fan_in, fan_out: 0.1),
    ("xavier", "tanh", lambda fan_in, fan_out: (2 / (fan_in + fan_out)) ** 0.5),
    ("xavier", "sigmoid", lambda fan_in, fan_out: 4 * (2 / (fan_in + fan_out)) ** 0.5),  # slope 1/4 at 0
    ("kaiming", "relu", lambda fan_in, fan_out: (2 / fan_in) ** 0.5)])
def test_mlp_init_sets_each_layers_weight_scale(init, act, std):
    """model.init (C3's fair start per arm): each linear weight's std matches its scheme's formula."""
    model = build_model({"name": "mlp", "hidden": [400, 400], "init": init, "act": act, "norm": "none"},
                        (1, 20, 20), 10)
    for layer in [m for m in model.modules() if isinstance(m, nn.Linear)][:2]:
        fan_out, fan_in = layer.weight.shape
        assert layer.weight.std().item() == pytest.approx(std(fan_in, fan_out), rel=0.05)
        assert (layer.bias == 0).all()


@pytest.mark.parametrize(("cfg", "message"), [
    ({"name": "mlp", "init": "orthogonal"}, "unknown model.init 'orthogonal'"),
    ({"name": "vgg"}, "unknown model 'vgg': choose model=<one of mlp, resnet_cifar"),
    ({"name": "resnet_cifar", "depth": 21}, r"model.depth=21: CIFAR ResNets have depth 6n\+2"),
    ({"name": "resnet", "arch": "resnet101"}, "unknown model.arch 'resnet101': choose one of resnet18, resnet50"),
    ({"name": "inception_bn", "stem": "mnist"}, "unknown model.stem 'mnist'"),
    ({"name": "inception_bn", "width_mult": 0}, "model.width_mult=0"),
    ({"name": "resnet_cifar", "act": "gelu"}, "unknown activation 'gelu'"),
    ({"name": "resnet", "act": "gelu"}, "unknown activation 'gelu'"),
    ({"name": "resnet_cifar", "init_scale": 0}, "model.init_scale=0"),
    ({"name": "resnet_cifar", "dept": 20}, "model=resnet_cifar has no option model.dept"),
    ({"name": "resnet_cifar", "norm": "gn", "norm_groups": 32}, "model.norm_groups=32 does not divide"),
    ({"name": "resnet_cifar", "norm": "bnorm"}, "model.norm='bnorm' is not a norm"),
])
def test_bad_model_config_is_one_clear_config_error(cfg, message):
    with pytest.raises(ConfigError, match=message) as err:
        build_model(cfg, (3, 8, 8), 10)
    assert "\n" not in str(err.value)
