"""MNIST-1D: generated offline by the mnist1d package, cached by its arguments; the CIFAR ResNet family's 1-D
variant that runs on it. Every test caches into its own tmp folder (data.cache_dir), never ~/.cache."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import bnrepro.data as data_module
from conftest import data_cfg
from bnrepro import ConfigError
from bnrepro.data import load_data
from bnrepro.inference import fold_bn
from bnrepro.models import build_model
from bnrepro.train import train
from conftest import compose_cfg

SMALL = 400  # examples: 320 train / 80 test, generated in well under a second


def cfg_for(tmp_path, **overrides):
    # the generator's own train/test split, without the validation split carved from train (tested in test_data)
    return data_cfg("mnist1d", **{"num_samples": SMALL, "cache_dir": str(tmp_path), **overrides})


def test_shapes_split_and_labels(tmp_path):
    data = load_data(cfg_for(tmp_path))
    assert data.train_x.shape == (320, 1, 40) and data.test_x.shape == (80, 1, 40)
    assert data.in_shape == (1, 40) and data.num_classes == 10
    assert data.train_y.dtype == torch.long and set(data.train_y.tolist()) == set(range(10))
    # load_data normalizes with the training set's statistics
    assert abs(float(data.train_x.mean())) < 1e-4 and abs(float(data.train_x.std()) - 1) < 1e-2


def test_train_and_test_are_disjoint(tmp_path):
    data = load_data(cfg_for(tmp_path))
    train_rows = {tuple(row) for row in data.train_x.flatten(1).tolist()}
    assert not any(tuple(row) in train_rows for row in data.test_x.flatten(1).tolist())


def test_same_seed_same_data_other_seed_other_data(tmp_path):
    a = load_data(cfg_for(tmp_path / "a"))
    b = load_data(cfg_for(tmp_path / "b"))  # generated again in another cache folder
    other = load_data(cfg_for(tmp_path / "a", seed=7))
    torch.testing.assert_close(a.train_x, b.train_x)
    assert torch.equal(a.train_y, b.train_y)
    assert not torch.allclose(a.train_x, other.train_x)


def test_second_load_hits_the_cache(tmp_path, monkeypatch):
    first = load_data(cfg_for(tmp_path))
    files = list(tmp_path.glob("mnist1d-*.pt"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp"))

    def must_not_generate(args):
        raise AssertionError("regenerated although the cache holds these arguments")

    monkeypatch.setattr(data_module, "generate_mnist1d", must_not_generate)
    again = load_data(cfg_for(tmp_path))
    torch.testing.assert_close(first.test_x, again.test_x)
    with pytest.raises(AssertionError, match="regenerated"):  # other arguments: another file
        load_data(cfg_for(tmp_path, train_split=0.5))


def test_cache_dir_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("BNREPRO_CACHE_DIR", str(tmp_path / "env"))
    cfg = compose_cfg("data=mnist1d", f"data.num_samples={SMALL}")
    load_data(cfg.data)
    assert len(list((tmp_path / "env").glob("mnist1d-*.pt"))) == 1
    monkeypatch.delenv("BNREPRO_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_module.cache_dir(compose_cfg("data=mnist1d").data) == tmp_path / "xdg" / "bnrepro"


def test_a_damaged_cache_file_is_regenerated(tmp_path, capsys):
    first = load_data(cfg_for(tmp_path))
    [path] = tmp_path.glob("mnist1d-*.pt")
    path.write_bytes(b"torn")
    again = load_data(cfg_for(tmp_path))
    torch.testing.assert_close(first.train_x, again.train_x)
    assert "unreadable" in capsys.readouterr().err


def test_generating_leaves_the_global_rngs_alone(tmp_path):
    random.seed(1), np.random.seed(1)
    want = random.random(), np.random.rand()
    random.seed(1), np.random.seed(1)
    load_data(cfg_for(tmp_path))
    assert (random.random(), np.random.rand()) == want


@pytest.mark.parametrize(("key", "value", "fix"), [("num_samples", 405, "multiple of 10"),
                                                    ("train_split", 1.0, "strictly between 0 and 1")])
def test_bad_arguments_are_config_errors(tmp_path, key, value, fix):
    with pytest.raises(ConfigError, match=fix):
        load_data(cfg_for(tmp_path, **{key: value}))


def test_30_step_mlp_run(tmp_path):
    cfg = compose_cfg("data=mnist1d", f"data.num_samples={SMALL * 2}", f"data.cache_dir={tmp_path / 'cache'}",
                      "model=mlp", "trainer.max_steps=30", "trainer.eval_every=10", "logger=none")
    summary = train(cfg, run_dir=tmp_path / "run")
    assert summary["status"] == "completed" and summary["steps"] == 30


@pytest.mark.parametrize("norm", ["bn", "gn", "none"])
def test_resnet_cifar_builds_its_1d_variant_from_the_input_shape(norm):
    torch.manual_seed(0)
    model = build_model({"name": "resnet_cifar", "depth": 8, "width": 8, "norm": norm, "norm_groups": 4},
                        (1, 40), 10)
    assert any(isinstance(m, torch.nn.Conv1d) for m in model.modules())
    assert not any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    x = torch.randn(8, 1, 40)
    y = model(x)
    y.square().mean().backward()
    assert y.shape == (8, 10) and torch.isfinite(y).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    if norm == "bn":  # the 1-D BN folds into its Conv1d like the 2-D one
        model.eval()
        torch.testing.assert_close(fold_bn(model)(x), model(x), atol=1e-5, rtol=1e-4)


def test_resnet_cifar_refuses_flat_inputs():
    with pytest.raises(ConfigError, match="use model=mlp"):
        build_model({"name": "resnet_cifar", "depth": 8}, (40,), 10)


@pytest.mark.parametrize("family", ["inception_bn", "inception", "resnet"])
def test_image_only_families_name_the_fix_for_sequences(family):
    with pytest.raises(ConfigError, match=f"model={family} takes .C, H, W. images.*use model=resnet_cifar"):
        build_model({"name": family}, (1, 40), 10)


def test_30_step_1d_resnet_run(tmp_path):
    cfg = compose_cfg("data=mnist1d", f"data.num_samples={SMALL * 2}", f"data.cache_dir={tmp_path / 'cache'}",
                      "model=resnet_cifar", "model.depth=8", "model.width=8", "trainer.batch_size=32",
                      "trainer.max_steps=30", "trainer.eval_every=10", "logger=none")
    summary = train(cfg, run_dir=tmp_path / "run")
    assert summary["status"] == "completed" and summary["steps"] == 30
