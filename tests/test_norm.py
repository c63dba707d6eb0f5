"""The norm factory: every kind builds, equals its reference, and bad settings raise one clear ConfigError."""
import socket

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from bnrepro import ConfigError
from bnrepro.norm import NORMS, Norm, convert_sync_bn, validate_batch
from bnrepro.norm.batch import FrozenBatchNorm, GlobalBatchNorm
from bnrepro.norm.ghost import BatchRenorm, GhostBatchNorm
from bnrepro.norm.noisy import NoisyBatchNorm

torch.set_num_threads(1)
SHAPES = {1: (8, 6), 2: (8, 6, 3, 3)}


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 3 + 1


def randomize_affine(*layers):
    for layer in layers:
        with torch.no_grad():
            layer.weight.copy_(torch.linspace(0.5, 1.5, layer.weight.numel()))
            layer.bias.copy_(torch.linspace(-1, 1, layer.bias.numel()))


def run_twins(a: nn.Module, b: nn.Module, x: torch.Tensor, steps: int = 3):
    """Train-mode forward/backward of two layers on the same inputs; assert equal outputs, grads, stats."""
    randomize_affine(a, b)
    for step in range(steps):
        xa, xb = (x + step).requires_grad_(), (x + step).requires_grad_()
        ya, yb = a(xa), b(xb)
        torch.testing.assert_close(ya, yb)
        weights = randn(*x.shape, seed=step + 1)
        (ya * weights).sum().backward()
        (yb * weights).sum().backward()
        torch.testing.assert_close(xa.grad, xb.grad)
    torch.testing.assert_close(a.weight.grad, b.weight.grad)
    torch.testing.assert_close(a.bias.grad, b.bias.grad)
    torch.testing.assert_close(a.running_mean, b.running_mean)
    torch.testing.assert_close(a.running_var, b.running_var)
    a.eval(), b.eval()
    torch.testing.assert_close(a(x), b(x))


@pytest.mark.parametrize("kind", [k for k in NORMS if k != "none"])
@pytest.mark.parametrize("dim", [1, 2])
def test_every_norm_builds_and_runs(kind, dim):
    norm = Norm(kind, norm_groups=3, ghost_batch=4)
    layer = norm(6, dim)
    if kind == "in" and dim == 1:  # IN at dim 1 takes (N, C, L) sequences and refuses (N, C) features
        with pytest.raises(ConfigError, match="model.norm=ln or gn"):
            layer(randn(*SHAPES[1]))
        x = randn(8, 6, 5).requires_grad_()
        layer(x).square().sum().backward()
        assert torch.isfinite(x.grad).all()
        return
    x = randn(*SHAPES[dim]).requires_grad_()
    y = layer(x)
    y.square().sum().backward()
    assert y.shape == x.shape and torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in layer.parameters())
    layer.eval()
    assert torch.isfinite(layer(x)).all()


def test_none_builds_no_layer():
    assert not Norm("none").enabled
    with pytest.raises(ValueError):
        Norm("none")(4, 2)


@pytest.mark.parametrize("dim", [1, 2])
def test_ghost_bn_with_ghost_equal_to_batch_is_bn(dim):
    bn = (nn.BatchNorm1d if dim == 1 else nn.BatchNorm2d)(6)
    run_twins(GhostBatchNorm(6, ghost_batch=8), bn, randn(*SHAPES[dim]))


@pytest.mark.parametrize("dim", [1, 2])
def test_ghost_bn_normalizes_each_sub_batch(dim):
    """ghost 2 of a batch of 8 = BN applied to each quarter, running stats = mean of the quarters' stats."""
    ghost, x = GhostBatchNorm(6, ghost_batch=2, momentum=None), randn(*SHAPES[dim])
    randomize_affine(ghost)
    y = ghost(x)
    chunks = x.split(2)
    want = torch.cat([F.batch_norm(c, None, None, ghost.weight, ghost.bias, True) for c in chunks])
    torch.testing.assert_close(y, want)
    dims = [0] + list(range(2, x.dim()))
    torch.testing.assert_close(ghost.running_mean, torch.stack([c.mean(dims) for c in chunks]).mean(0))
    torch.testing.assert_close(ghost.running_var, torch.stack([c.var(dims) for c in chunks]).mean(0))


@pytest.mark.parametrize("ghost", [0, 4])
@pytest.mark.parametrize("dim", [1, 2])
def test_brn_without_renorm_room_is_bn(dim, ghost):
    """r_max=1, d_max=0 clips r to 1 and d to 0: Batch Renorm reduces to (ghost) BN."""
    ref = GhostBatchNorm(6, ghost_batch=ghost)
    run_twins(BatchRenorm(6, ghost_batch=ghost, r_max=1.0, d_max=0.0), ref, randn(*SHAPES[dim]))


def test_brn_applies_clipped_r_and_d_as_constants():
    brn = BatchRenorm(6, r_max=1.5, d_max=0.5)
    randomize_affine(brn)
    with torch.no_grad():
        brn.running_mean.fill_(0.5)
        brn.running_var.fill_(2.0)
    x = randn(*SHAPES[2]).requires_grad_()
    y = brn(x)
    mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)
    std, run_std = (var + brn.eps).sqrt(), torch.tensor(2.0 + brn.eps).sqrt()
    r = (std / run_std).clamp(1 / 1.5, 1.5).detach()
    d = ((mean - 0.5) / run_std).clamp(-0.5, 0.5).detach()
    c = (slice(None), None, None)
    x_hat = (x - mean[c]) / std[c] * r[c] + d[c]
    torch.testing.assert_close(y, x_hat * brn.weight[c] + brn.bias[c])
    assert (r != 1).any() and (d.abs() == 0.5).any()  # the clipping is exercised


def limits_at(brn, step):
    brn.num_batches_tracked.fill_(step)
    return tuple(round(v, 6) for v in brn.limits())


def test_brn_follows_the_papers_schedule():
    """Batch Renorm paper, sec. 4.1: r_max = 1, d_max = 0 for the first 5k steps, then relaxed to reach r_max = 3
    at 40k steps and d_max = 5 at 25k (linearly here). Values by hand: at 15k, r_max has done 10/35 of its ramp
    (1 + 2 * 10/35) and d_max half of its (5 * 10/20)."""
    brn = Norm("brn")(4, dim=1)  # the factory's defaults are the paper's
    assert (brn.hold, brn.r_max_at, brn.d_max_at) == (5000, 40000, 25000)
    assert limits_at(brn, 0) == (1.0, 0.0)
    assert limits_at(brn, 5000) == (1.0, 0.0)
    assert limits_at(brn, 15000) == (round(1 + 2 * 10 / 35, 6), 2.5)
    assert limits_at(brn, 25000) == (round(1 + 2 * 20 / 35, 6), 5.0)
    assert limits_at(brn, 40000) == (3.0, 5.0)
    assert limits_at(brn, 10 ** 6) == (3.0, 5.0)
    brn.num_batches_tracked.zero_()
    for _ in range(3):  # training forwards count the steps
        brn(randn(4, 4))
    assert int(brn.num_batches_tracked) == 3 and brn.limits() == (1.0, 0.0)


def test_brn_warmup_scales_the_papers_schedule_to_a_short_run():
    """model.brn_warmup=400: the 5k/40k/25k shape scaled by 400/40k: hold 50, d_max at 250, r_max at 400."""
    brn = Norm("brn", brn_warmup=400)(4, dim=2)
    assert (brn.hold, brn.r_max_at, brn.d_max_at) == (50, 400, 250)
    assert limits_at(brn, 50) == (1.0, 0.0)
    assert limits_at(brn, 150) == (round(1 + 2 * 100 / 350, 6), 2.5)
    assert limits_at(brn, 250) == (round(1 + 2 * 200 / 350, 6), 5.0)
    assert limits_at(brn, 400) == (3.0, 5.0)


def test_brn_without_a_schedule_clips_fully_from_the_start():
    brn = BatchRenorm(4, r_max=3.0, d_max=5.0)
    assert brn.limits() == (3.0, 5.0)
    with pytest.raises(ConfigError, match=r"^model\.brn_hold=-1: input should be greater than or equal to 0"):
        Norm("brn", brn_hold=-1)  # the schema's bound (NormOptions), the same one line as at the door


@pytest.mark.parametrize("kind", ["bn", "ghost_bn", "brn"])
def test_bn_trains_with_biased_and_tracks_unbiased_variance(kind):
    """Algorithms 1 and 2: normalize with the biased batch variance, keep the unbiased m/(m-1) estimate."""
    layer = Norm(kind, norm_momentum=1.0)(6, dim=2)
    x = randn(*SHAPES[2])
    y = layer(x)
    m = x.shape[0] * x.shape[2] * x.shape[3]
    biased = x.var((0, 2, 3), unbiased=False)
    want = (x - x.mean((0, 2, 3))[:, None, None]) / (biased[:, None, None] + layer.eps).sqrt()
    torch.testing.assert_close(y, want)
    torch.testing.assert_close(layer.running_var, biased * m / (m - 1))


def test_gn_ln_in_equal_the_reference_computations():
    x = randn(*SHAPES[2])
    gn, ln, inorm = (Norm(k, norm_groups=3)(6, dim=2) for k in ("gn", "ln", "in"))
    randomize_affine(gn, ln, inorm)
    c = (slice(None), None, None)
    torch.testing.assert_close(gn(x), F.group_norm(x, 3, gn.weight, gn.bias))
    ln_ref = F.layer_norm(x, x.shape[1:]) * ln.weight[c] + ln.bias[c]
    torch.testing.assert_close(ln(x), ln_ref)
    torch.testing.assert_close(inorm(x), F.group_norm(x, 6, inorm.weight, inorm.bias))
    x1 = randn(*SHAPES[1])
    gn1, ln1 = Norm("gn", norm_groups=3)(6, dim=1), Norm("ln")(6, dim=1)
    randomize_affine(gn1, ln1)
    per_group = F.layer_norm(x1.reshape(8, 3, 2), (2,)).reshape(8, 6)
    torch.testing.assert_close(gn1(x1), per_group * gn1.weight + gn1.bias)
    torch.testing.assert_close(ln1(x1), F.layer_norm(x1, (6,), ln1.weight, ln1.bias))


def test_noisy_bn_injects_changing_noise_in_training_only():
    noisy, bn = NoisyBatchNorm(6, noise_mean=0.5, noise_std=0.5), nn.BatchNorm2d(6)
    x = randn(*SHAPES[2])
    y1, y2, clean = noisy(x), noisy(x), (bn(x), bn(x))[0]
    assert not torch.allclose(y1, clean, atol=1e-3) and not torch.allclose(y1, y2, atol=1e-3)
    # the noise comes after the normalization: the statistics BN tracks are untouched by it
    torch.testing.assert_close(noisy.running_mean, bn.running_mean)
    torch.testing.assert_close(noisy.running_var, bn.running_var)
    noisy.eval(), bn.eval()
    torch.testing.assert_close(noisy(x), bn(x))


def test_noisy_bn_noise_has_the_configured_strength():
    noisy = NoisyBatchNorm(64, noise_mean=0.5, noise_std=0.5)
    x = randn(4096, 64)
    shift = noisy(x) - F.batch_norm(x, None, None, training=True)
    # per channel the shift's mean lies in [-0.5, 0.5] and its spread is bounded by 0.5 * sqrt(1 + E y^2)
    assert shift.mean(0).abs().max() <= 0.5 + 0.1 and shift.mean(0).std() > 0.1
    assert shift.std(0).max() <= 0.5 * 2 ** 0.5 + 0.1 and shift.std(0).max() > 0.1


def test_frozen_bn_uses_fixed_statistics_and_trains_its_affine():
    frozen = FrozenBatchNorm(6)
    with torch.no_grad():
        frozen.running_mean.fill_(1.0)
        frozen.running_var.fill_(4.0)
    x = randn(*SHAPES[2])
    y = frozen(x)
    torch.testing.assert_close(y, (x - 1.0) / (4.0 + frozen.eps) ** 0.5)
    y.sum().backward()
    assert frozen.weight.grad is not None and frozen.bias.grad is not None
    assert (frozen.running_mean == 1.0).all() and (frozen.running_var == 4.0).all()


def test_every_batch_stat_layer_is_a_torch_batchnorm():
    for kind in ("bn", "ghost_bn", "brn", "noisy_bn", "frozen_bn"):
        for dim in (1, 2):
            assert isinstance(Norm(kind)(6, dim), _BatchNorm)


def test_unknown_norm_is_a_config_error_naming_the_closest_and_every_norm():
    with pytest.raises(ConfigError, match="model.norm='bnn' is not a norm: did you mean bn\\? set model.norm to "
                                          "one of bn, frozen_bn, ghost_bn, brn, ") as err:
        Norm("bnn")
    assert all(name in str(err.value) for name in NORMS) and "dotted path" in str(err.value)


def test_groups_must_divide_channels():
    with pytest.raises(ConfigError, match=r"model.norm_groups=32 does not divide a layer's 100 channels"):
        Norm("gn")(100, dim=1)


@pytest.mark.parametrize("kind", ["ghost_bn", "brn"])
def test_ghost_batch_must_divide_the_batch(kind):
    layer = Norm(kind, ghost_batch=3)(6, dim=2)
    with pytest.raises(ConfigError, match="does not split into ghost batches of model.ghost_batch=3"):
        layer(randn(*SHAPES[2]))
    with pytest.raises(ConfigError, match="trainer.batch_size=8 is not a multiple of model.ghost_batch=3"):
        validate_batch(nn.Sequential(layer), 8)
    validate_batch(nn.Sequential(layer), 9)


def test_ghost_batch_of_one_feature_vector_is_refused():
    with pytest.raises(ConfigError, match="set model.ghost_batch >= 2"):
        Norm("ghost_bn", ghost_batch=1)(6, dim=1)(randn(*SHAPES[1]))


@pytest.mark.parametrize("kind", ["bn", "ghost_bn", "brn", "noisy_bn"])
def test_batch_of_one_is_refused_for_batch_statistics(kind):
    model = nn.Sequential(nn.Linear(4, 6), Norm(kind)(6, dim=1))
    with pytest.raises(ConfigError, match=r"BN needs more than one example per batch: set trainer.batch_size >= 2 "
                                          r"or model.norm=gn\|ln\|none"):
        validate_batch(model, 1)
    validate_batch(model, 2)


@pytest.mark.parametrize("kind", ["gn", "ln", "frozen_bn"])
def test_batch_of_one_is_fine_without_batch_statistics(kind):
    validate_batch(nn.Sequential(Norm(kind, norm_groups=2)(6, dim=2)), 1)


def test_bad_norm_settings_are_config_errors():
    """Norm checks its options by the schema's own bounds (bnrepro.schema.NormOptions), in the door's words."""
    with pytest.raises(ConfigError, match=r"^model\.ghost_batch=-1: input should be greater than or equal to 0"):
        Norm("ghost_bn", ghost_batch=-1)
    with pytest.raises(ConfigError, match=r"^model\.brn_rmax=0\.5: input should be greater than or equal to 1"):
        Norm("brn", brn_rmax=0.5)
    with pytest.raises(ConfigError, match=r"^model\.norm_groups=0: input should be greater than or equal to 1"):
        Norm("gn", norm_groups=0)
    with pytest.raises(ConfigError, match=r"^unknown key model\.groups: did you mean model\.norm_groups\?"):
        Norm("gn", groups=2)


def test_convert_sync_bn_is_a_no_op_in_one_process():
    model = nn.Sequential(nn.BatchNorm2d(4))
    assert convert_sync_bn(model)[0].__class__ is nn.BatchNorm2d


def _sync_worker(rank: int, port: int, x: torch.Tensor, upstream: torch.Tensor, results):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        model = convert_sync_bn(nn.Sequential(nn.BatchNorm2d(3)))
        layer = model[0]
        assert isinstance(layer, GlobalBatchNorm)
        randomize_affine(layer)
        xr = x.chunk(2)[rank].clone().requires_grad_()
        y = model(xr)
        (y * upstream.chunk(2)[rank]).sum().backward()
        grads = torch.stack([layer.weight.grad, layer.bias.grad])
        dist.all_reduce(grads)  # what DDP does with parameter gradients
        results[rank] = (y.detach(), xr.grad, grads, layer.running_mean.clone(), layer.running_var.clone())
    finally:
        dist.destroy_process_group()


def test_global_bn_matches_global_batch_bn_across_two_processes():
    """CPU (gloo) SyncBN: outputs, input and parameter gradients and running stats equal BN on the global batch."""
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    x, upstream = randn(6, 3, 4, 4), randn(6, 3, 4, 4, seed=1)
    results = mp.Manager().dict()
    mp.spawn(_sync_worker, args=(port, x, upstream, results), nprocs=2)

    ref = nn.BatchNorm2d(3)
    randomize_affine(ref)
    xg = x.clone().requires_grad_()
    y = ref(xg)
    (y * upstream).sum().backward()
    for rank in range(2):
        out, grad, param_grads, mean, var = results[rank]
        torch.testing.assert_close(out, y.detach().chunk(2)[rank], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(grad, xg.grad.chunk(2)[rank], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(param_grads, torch.stack([ref.weight.grad, ref.bias.grad]), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(mean, ref.running_mean, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(var, ref.running_var, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cls", [GhostBatchNorm, BatchRenorm])
def test_ghost_norms_train_under_bf16_autocast(cls):
    """Under bf16 autocast the sub-batch statistics stay fp32, as torch's BN keeps them: bf16 statistics beside
    fp32 weights were refused by the kernels (every ghost-BN arm of C7 failed in `make gpu-check` on an H200, and
    under trainer.precision=bf16 on the CPU). Output and running statistics as in fp32, to bf16's precision."""
    torch.manual_seed(0)
    fp32, bf16 = cls(4, ghost_batch=2), cls(4, ghost_batch=2)
    x = torch.randn(8, 4, 3, 3) * 2 + 1
    want = fp32(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = bf16(x.bfloat16())
    got.float().sum().backward()
    assert got.dtype == torch.bfloat16 and bf16.weight.grad.dtype == torch.float32
    assert bf16.running_mean.dtype == bf16.running_var.dtype == torch.float32
    torch.testing.assert_close(got.float(), want, atol=0.05, rtol=0.02)
    torch.testing.assert_close(bf16.running_mean, fp32.running_mean, atol=0.01, rtol=0.01)
    torch.testing.assert_close(bf16.running_var, fp32.running_var, atol=0.02, rtol=0.02)
