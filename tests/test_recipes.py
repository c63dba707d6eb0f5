"""The GPU-scale recipes are the papers': every experiment composes at cifar and imagenet scale, and the values
the papers fix come out of the composed configs (issue 9, section 3)."""
from __future__ import annotations

import inspect
import pytest
import torch
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import get_class

from bnrepro.models import META_KEYS, MODELS
from bnrepro.schema import NormOptions
from bnrepro.norm import Norm
from bnrepro.optim import build_optimizer, build_schedule, effective_lr
from conftest import CONFIGS
from hydra_plugins.bnrepro_claim_groups import group_dir

EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))
GPU_SCALES = ("cifar", "imagenet")
IMAGENET_TRAIN = 1_281_167


def axes(cfg) -> dict[str, list[str]]:
    params = cfg.hydra.sweeper.params or {}
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    return {o.get_key_element(): list(o.sweep_string_iterator()) if o.is_sweep_override()
            else [o.get_value_element_as_str()] for o in parsed}


def compose(*overrides):
    """The real configs, composed with the hydra node (the sweep's axes live there)."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=list(overrides), return_hydra_config=True)


def model_keys_accepted(cfg) -> bool:
    model = dict(cfg.model)
    accepted = set(inspect.signature(get_class(MODELS[model["name"]])).parameters)
    own = {k for k, v in model.items() if v is not None}  # a null key is one the family does not have
    return not (own - set(NormOptions.model_fields) - set(META_KEYS) - accepted)


def lr_decay_per(cfg, steps: int) -> float:
    """The factor the built schedule multiplies the LR by over `steps` steps (the ExponentialLR's gamma)."""
    opt = build_optimizer(cfg.optim, torch.nn.Linear(1, 1), cfg.trainer.batch_size)
    return build_schedule(cfg.schedule, opt, cfg.trainer.max_steps).gamma ** steps


@pytest.mark.parametrize("scale", GPU_SCALES)
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_with_its_recipe(experiment, scale):
    cfg = compose(f"experiment={experiment}", f"scale={scale}")
    assert cfg.scale_name == scale and model_keys_accepted(cfg)
    if experiment in ("c2_lr", "c10_small_lr", "c13_decoupling"):  # C13 runs at C2's multipliers
        # the multipliers multiply the no-BN net's own rate: ResNet-20's base_lr at cifar, the paper's Inception
        # rate at imagenet
        assert cfg.optim.lr == cfg.base_lr == {"cifar": 0.01, "imagenet": 0.0015}[scale]
        for mult in axes(cfg)["optim.lr_mult"]:
            arm = compose(f"experiment={experiment}", f"scale={scale}", f"optim.lr_mult={mult}")
            assert effective_lr(arm.optim, arm.trainer.batch_size) == pytest.approx(cfg.base_lr * float(mult))
    if scale == "imagenet" and cfg.schedule.name == "exponential":
        assert cfg.schedule.decay_every_steps == round(8 * IMAGENET_TRAIN / 32)  # GoogLeNet's 8 epochs
        assert cfg.schedule.decay_rate == 0.96


def test_cifar_c2_x30_is_30_times_the_no_bn_rate_not_the_bn_recipes():
    x30 = compose("experiment=c2_lr", "scale=cifar", "optim.lr_mult=30")
    other = compose("experiment=c5_dropout", "scale=cifar")  # a claim that does not vary the LR: He et al.'s 0.1
    assert effective_lr(x30.optim, 128) == pytest.approx(0.3) and other.optim.lr == 0.1


@pytest.mark.parametrize(("ladder", "period"), [("inception", 320_292), ("bn_baseline", 320_292),
                                                ("bn_x5", 320_292 / 6), ("bn_x30", 320_292 / 6),
                                                ("bn_x5_sigmoid", 320_292 / 6)])
def test_imagenet_c1_decays_on_the_papers_absolute_schedule(ladder, period):
    """0.96 per 8 epochs (GoogLeNet), 6x faster for BN-x5/x30, whatever the run length."""
    for steps in (3_000_000, 100_000):
        cfg = compose("experiment=c1_speed", "scale=imagenet", f"ladder={ladder}", f"trainer.max_steps={steps}")
        assert lr_decay_per(cfg, round(period)) == pytest.approx(0.96, abs=1e-4)


def test_imagenet_c1_checks_the_papers_fixed_target():
    cfg = compose("experiment=c1_speed", "scale=imagenet")
    assert 0.722 in cfg.targets and cfg.trainer.max_steps >= 2_100_000  # BN-x5 reaches 72.2% at 2.1e6 steps
    assert (cfg.trainer.batch_size, cfg.optim.lr) == (32, 0.0015)


def test_cifar_c1_keeps_the_run_relative_schedule_and_cpu_an_absolute_one():
    """cifar: decay every 5% of the run. cpu (issue 21): every 10 steps whatever a rung's budget, so a rung's LR at
    a step no longer depends on how long it trains (the rungs now train 800, 300 and 120 steps)."""
    cifar = compose("experiment=c1_speed", "scale=cifar")
    assert cifar.schedule.decay_every_steps is None and cifar.schedule.decay_every_frac == 0.05
    assert compose("experiment=c1_speed", "scale=cpu").schedule.decay_every_steps == 10


@pytest.mark.parametrize("scale", GPU_SCALES)
def test_c7_starts_each_residual_branch_at_gamma_zero(scale):
    """GN paper, sec. 4.1 (after Goyal et al.): gamma = 0 in each residual block's last norm, for every norm."""
    assert compose("experiment=c7_small_batch", f"scale={scale}").model.zero_init_residual is True


@pytest.mark.parametrize("n", [2, 4, 8, 16, 32])
@pytest.mark.parametrize("norm", ["bn", "gn"])
def test_imagenet_c7_has_the_gn_papers_8_worker_protocol(norm, n):
    cfg = compose("experiment=c7_small_batch", "scale=imagenet", f"norm_batch=gpu8_{norm}_{n}")
    assert cfg.claim_params.c7_protocol == "gpu8" and cfg.model.ghost_batch == n and cfg.trainer.batch_size == 8 * n
    assert effective_lr(cfg.optim, cfg.trainer.batch_size) == pytest.approx(0.1 * 8 * n / 256)
    assert cfg.trainer.max_steps * 8 * n == pytest.approx(100 * IMAGENET_TRAIN, rel=1e-5)  # 100 epochs
    assert cfg.model.norm == {"bn": "ghost_bn", "gn": "gn"}[norm] and model_keys_accepted(cfg)


def test_imagenet_c7_has_in_ln_and_brn_arms():
    gpu8 = {p.stem for p in group_dir(CONFIGS, "norm_batch").glob("gpu8_*.yaml")}
    assert {"gpu8_in_32", "gpu8_ln_32", "gpu8_brn_4"} <= gpu8
    for arm, norm in (("in", "in"), ("gpu8_in_32", "in"), ("gpu8_brn_4", "brn")):
        cfg = compose("experiment=c7_small_batch", "scale=imagenet", f"norm_batch={arm}")
        assert cfg.model.norm == norm and model_keys_accepted(cfg)


@pytest.mark.parametrize("scale", GPU_SCALES)
def test_gpu_scale_batch_renorm_follows_the_papers_absolute_schedule(scale):
    cfg = compose("experiment=c7_small_batch", f"scale={scale}", "norm_batch=brn_4")
    m = cfg.model
    assert (m.brn_hold, m.brn_rmax_at, m.brn_dmax_at, m.brn_warmup, m.brn_rmax, m.brn_dmax) == \
        (5000, 40000, 25000, None, 3.0, 5.0)


@pytest.mark.parametrize("scale", ("cpu", *GPU_SCALES))
def test_batch_renorm_schedule_ends_inside_every_run(scale):
    """At every scale the hold-then-relax schedule completes within the run, so BRN is tested with its full
    limits (at cpu scale: the paper's schedule scaled by model.brn_warmup)."""
    cfg = compose("experiment=c7_small_batch", f"scale={scale}")
    for arm in axes(cfg)["norm_batch"]:
        run = compose("experiment=c7_small_batch", f"scale={scale}", f"norm_batch={arm}")
        if run.model.norm != "brn":
            continue
        hold, r_max_at, d_max_at = Norm.of(run.model).brn_schedule()
        assert 0 <= hold < d_max_at <= r_max_at <= run.trainer.max_steps, (arm, hold, d_max_at, r_max_at)
