"""Inference-time BN tools: folding, precise BN (population and Algorithm 2 estimators), batch statistics at eval."""
import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from bnrepro.inference import batch_statistics, fold_bn, precise_bn
from bnrepro.models import build_model
from bnrepro.norm import Norm
from bnrepro.norm.batch import FrozenBatchNorm

torch.set_num_threads(1)
TINY = {
    "mlp": ({"name": "mlp"}, (1, 8, 8)),
    "resnet_cifar": ({"name": "resnet_cifar", "depth": 8}, (3, 8, 8)),
    "resnet": ({"name": "resnet", "arch": "resnet18"}, (3, 32, 32)),
    "inception_bn": ({"name": "inception_bn", "width_mult": 0.25}, (1, 8, 8)),
    "inception": ({"name": "inception", "width_mult": 0.25, "norm": "bn"}, (1, 8, 8)),
}


def trained_in_eval(family, norm):
    """A model whose BN layers hold non-trivial running statistics and affine parameters, in eval mode."""
    cfg, shape = TINY[family]
    torch.manual_seed(0)
    model = build_model({**cfg, "norm": norm, "ghost_batch": 2}, shape, 10)
    with torch.no_grad():
        for step in range(3):
            model(torch.randn(8, *shape) * 2 + step)
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.5, 0.5)
                if isinstance(m, FrozenBatchNorm):
                    m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
    return model.eval(), shape


@pytest.mark.parametrize("norm", ["bn", "ghost_bn", "brn", "noisy_bn", "frozen_bn"])
@pytest.mark.parametrize("family", list(TINY))
def test_folded_model_equals_the_eval_model(family, norm):
    model, shape = trained_in_eval(family, norm)
    folded = fold_bn(model)
    assert type(folded) is type(model)
    assert not [m for m in folded.modules() if isinstance(m, _BatchNorm)]  # every BN here follows a layer
    assert [m for m in model.modules() if isinstance(m, _BatchNorm)]  # the original is untouched
    x = torch.randn(4, *shape)
    with torch.no_grad():
        want, got = model(x), folded(x)
    assert (got - want).abs().max() <= 1e-5 * max(1.0, want.abs().max())


def test_fold_leaves_a_bn_that_does_not_follow_a_layer():
    model = nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 3), nn.BatchNorm1d(3)).eval()
    folded = fold_bn(model)
    assert isinstance(folded[0], nn.BatchNorm1d) and isinstance(folded[2], nn.Identity)


def test_fold_keeps_a_bn_whose_input_is_also_used_elsewhere():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y

    folded = fold_bn(Branchy())
    assert isinstance(folded.bn, nn.BatchNorm2d)


def batches(n_batches, batch, features=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, features, generator=gen) * 2 + 1, torch.zeros(batch)) for _ in range(n_batches)]


@pytest.mark.parametrize(("kind", "ghost"), [("bn", 0), ("noisy_bn", 0), ("ghost_bn", 4), ("brn", 4)])
def test_precise_bn_alg2_is_the_mean_of_the_normalization_batch_statistics(kind, ghost):
    """The paper's Algorithm 2: E[x] = mean of batch means, Var[x] = m/(m-1) x mean of biased batch variances
    (= mean of the unbiased ones); for ghost_bn and brn the batch is the ghost sub-batch."""
    layer = Norm(kind, ghost_batch=ghost)(3, dim=1)
    model = nn.Sequential(layer).eval()
    data = batches(5, 8)
    before = (layer.momentum, layer.num_batches_tracked.clone())
    assert precise_bn(model, data, num_examples=32, estimator="alg2") == 32
    used = torch.cat([x for x, _ in data[:4]]).split(ghost or 8)
    torch.testing.assert_close(layer.running_mean, torch.stack([c.mean(0) for c in used]).mean(0))
    torch.testing.assert_close(layer.running_var, torch.stack([c.var(0, unbiased=True) for c in used]).mean(0))
    assert (layer.momentum, layer.num_batches_tracked) == before and not model.training


@pytest.mark.parametrize(("kind", "ghost"), [("bn", 0), ("ghost_bn", 4)])
def test_precise_bn_population_is_the_variance_of_all_batches_combined(kind, ghost):
    """Wu & Johnson's default: mean and sample variance of every recalibration value at once. Batches whose
    means differ (shifted by 0, 1, 2, 3) make it exceed Algorithm 2's within-batch estimate by the spread of
    the batch means, as it should; the ghost size does not change it."""
    data = [(x + shift, y) for shift, (x, y) in enumerate(batches(4, 8))]
    values = torch.cat([x for x, _ in data])
    layer = Norm(kind, ghost_batch=ghost)(3, dim=1)
    assert precise_bn(nn.Sequential(layer), data, num_examples=32) == 32  # estimator="population" by default
    torch.testing.assert_close(layer.running_mean, values.mean(0))
    torch.testing.assert_close(layer.running_var, values.var(0, unbiased=True))
    alg2 = Norm(kind, ghost_batch=ghost)(3, dim=1)
    precise_bn(nn.Sequential(alg2), data, num_examples=32, estimator="alg2")
    torch.testing.assert_close(alg2.running_mean, layer.running_mean)
    assert (layer.running_var > alg2.running_var).all()  # plus the between-batch variance (~1.25 here)


def test_precise_bn_population_on_images_pools_pixels_and_examples():
    layer = Norm("bn")(2, dim=2)
    gen = torch.Generator().manual_seed(1)
    data = [torch.randn(4, 2, 3, 3, generator=gen) + i for i in range(3)]
    precise_bn(nn.Sequential(layer), data, num_examples=12)
    pooled = torch.cat(data).transpose(0, 1).reshape(2, -1)
    torch.testing.assert_close(layer.running_mean, pooled.mean(1))
    torch.testing.assert_close(layer.running_var, pooled.var(1, unbiased=True))


def test_precise_bn_refuses_an_unknown_estimator():
    with pytest.raises(ValueError, match="estimator"):
        precise_bn(nn.Sequential(Norm("bn")(3, dim=1)), batches(1, 8), num_examples=8, estimator="median")


def test_precise_bn_recomputes_every_layer_with_the_weights_fixed():
    model, shape = trained_in_eval("resnet_cifar", "bn")
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k}
    data = [torch.randn(8, *shape) for _ in range(4)]
    precise_bn(model, data, num_examples=32)
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in weights.items())
    # a second pass over the same data with the same weights gives the same statistics: nothing of the EMA is left
    first = {k: v.clone() for k, v in after.items() if "running" in k}
    precise_bn(model, data, num_examples=32)
    assert all(torch.allclose(model.state_dict()[k], v, atol=1e-6) for k, v in first.items())


def test_precise_bn_leaves_frozen_bn_alone():
    frozen = FrozenBatchNorm(3)
    precise_bn(nn.Sequential(frozen), batches(2, 8), num_examples=16)
    assert (frozen.running_mean == 0).all() and (frozen.running_var == 1).all()


@pytest.mark.parametrize("size", [8, 10])  # 10: a last test batch that ghost batches of 4 do not fill
@pytest.mark.parametrize("kind", ["bn", "ghost_bn", "brn", "noisy_bn"])
def test_batch_statistics_normalizes_with_the_batch_and_keeps_the_running_stats(kind, size):
    layer = Norm(kind, ghost_batch=4)(3, dim=1)
    model = nn.Sequential(layer)
    for x, _ in batches(3, 8, seed=1):
        model(x)
    model.eval()
    stats = (layer.running_mean.clone(), layer.running_var.clone(), layer.num_batches_tracked.clone())
    x = batches(1, size, seed=2)[0][0]
    population = model(x)
    with batch_statistics(model):
        y = model(x)
        assert torch.equal(model(x), y)  # deterministic: no noise outside training
    reference = nn.BatchNorm1d(3, track_running_stats=False)
    reference.load_state_dict({"weight": layer.weight, "bias": layer.bias})
    want = torch.cat([reference(c) for c in x.split(4)]) if kind in ("ghost_bn", "brn") else reference(x)
    torch.testing.assert_close(y, want)
    assert not torch.allclose(y, population)
    assert all(torch.equal(a, b) for a, b in zip(stats, (layer.running_mean, layer.running_var,
                                                         layer.num_batches_tracked)))
    torch.testing.assert_close(model(x), population)  # population statistics are back after the block


def test_batch_statistics_on_a_model_restores_after_an_error():
    model, shape = trained_in_eval("resnet_cifar", "bn")
    x = torch.randn(4, *shape)
    with torch.no_grad():
        want = model(x)
        with pytest.raises(RuntimeError), batch_statistics(model):
            raise RuntimeError("boom")
        torch.testing.assert_close(model(x), want)
