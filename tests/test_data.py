"""Every loader on tiny files written in its real on-disk format; the tensor loader's order, resume and
sharding; the device-side CIFAR augmentation."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from bnrepro import ConfigError
from bnrepro.data import TensorLoader, crop_flip, load_data, stratified_split
from conftest import data_cfg


def cfg(name: str, **kw):
    return data_cfg(name, **kw)


# --- MNIST: uncompressed IDX files in <root>/MNIST/raw (conftest's mnist_root) -------------------------

def test_mnist_reads_idx_files(mnist_root):
    data = load_data(cfg(name="mnist", root=str(mnist_root)))
    assert data.train_x.shape == (120, 1, 28, 28) and data.test_x.shape == (40, 1, 28, 28)
    assert data.in_shape == (1, 28, 28) and data.num_classes == 10
    assert data.train_y.tolist() == [i % 10 for i in range(120)]
    # normalized with the training set's statistics
    assert abs(data.train_x.mean().item()) < 1e-5 and abs(data.train_x.std().item() - 1) < 1e-3


def test_mnist_missing_names_path_and_layout(tmp_path):
    with pytest.raises(ConfigError, match=r"MNIST/raw.*train-images-idx3-ubyte.*data.download=true"):
        load_data(cfg(name="mnist", root=str(tmp_path)))


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_mnist_file_is_one_clear_error_naming_it(mnist_root, damage):
    """torchvision asserts on a file that is not IDX ("AssertionError", no file named): say which and why."""
    labels = mnist_root / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    labels.write_bytes(b"<html>not found</html>" if damage == "garbage" else labels.read_bytes()[:-7])
    why = "not an IDX file" if damage == "garbage" else r"truncated or padded \(its header says \[120\], 113"
    with pytest.raises(ConfigError, match=rf"MNIST file {labels} is damaged: {why}.*replace it"):
        load_data(cfg(name="mnist", root=str(mnist_root)))


# --- data.val_split: a stratified validation split carved from the training set -------------------------

def rows(x):
    return {tuple(r.tolist()) for r in x.flatten(1)}


def test_val_split_is_disjoint_from_train_and_test_and_stratified(mnist_root):
    data = load_data(cfg(name="mnist", root=str(mnist_root), val_split=0.25))
    assert data.has_val and len(data.train_x) == 90 and len(data.val_x) == 30 and len(data.test_x) == 40
    # the three splits share no image (the fixture's images are random, hence unique)
    train, val, test = rows(data.train_x), rows(data.val_x), rows(data.test_x)
    assert len(train) == 90 and len(val) == 30 and not train & val and not val & test and not train & test
    # stratified: each class gives 25% of its 12 training images; the loader only ever draws training rows
    assert torch.bincount(data.val_y, minlength=10).tolist() == [3] * 10
    loader = TensorLoader(data.train_x, data.train_y, 30, seed=0)
    assert all(not rows(next(loader)[0]) & val for _ in range(6))
    # the test set is untouched: the same images as without a split
    plain = load_data(cfg(name="mnist", root=str(mnist_root)))
    assert torch.equal(plain.test_y, data.test_y) and not plain.has_val


def test_val_split_is_seeded_by_split_seed_and_keeps_class_shares():
    y = torch.arange(200) % 4
    y[:40] = 0  # unbalanced classes: 0 holds 80 of 200
    train, val = stratified_split(y, 0.1, seed=0)
    assert torch.equal(torch.sort(torch.cat([train, val])).values, torch.arange(200))
    assert torch.bincount(y[val]).tolist() == [8, 4, 4, 4] and len(set(val.tolist()) & set(train.tolist())) == 0
    assert torch.equal(stratified_split(y, 0.1, seed=0)[1], val)
    assert not torch.equal(stratified_split(y, 0.1, seed=1)[1], val)


def test_digits_validation_default_and_bad_fractions():
    data = load_data(cfg(name="digits", val_split=0.15))
    assert (len(data.train_x), len(data.val_x), len(data.test_x)) == (1221, 216, 360)
    for bad in (1.0, -0.1):
        with pytest.raises(ConfigError, match=f"data.val_split={bad}: set a fraction"):
            load_data(cfg(name="digits", val_split=bad))


def test_imagenet_refuses_a_val_split(tmp_path):
    with pytest.raises(ConfigError, match="not supported for imagenet.*data.val_split=0"):
        load_data(cfg(name="imagenet", root=str(tmp_path), val_split=0.1))


# --- CIFAR-10/100: python pickles ---------------------------------------------------------------------

def write_cifar(root, name, n_train=6, n_test=4):
    rng = np.random.default_rng(1)
    if name == "cifar10":
        folder, files, key = root / "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "labels"
        files = [(f, n_train) for f in files] + [("test_batch", n_test)]
    else:
        folder, key = root / "cifar-100-python", "fine_labels"
        files = [("train", n_train), ("test", n_test)]
    folder.mkdir(parents=True)
    for f, n in files:
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), key: list(range(n))}
        if name == "cifar100":
            batch["coarse_labels"] = [0] * n
        with open(folder / f, "wb") as fh:
            pickle.dump(batch, fh)


@pytest.mark.parametrize("name,n_train,classes", [("cifar10", 30, 10), ("cifar100", 6, 100)])
def test_cifar_reads_pickles(tmp_path, name, n_train, classes):
    write_cifar(tmp_path, name)
    data = load_data(cfg(name=name, root=str(tmp_path), augment=True))
    assert data.train_x.shape == (n_train, 3, 32, 32) and data.test_x.shape == (4, 3, 32, 32)
    assert data.num_classes == classes and data.augment
    assert data.test_y.tolist() == [0, 1, 2, 3]
    # channel-wise normalization from the training set
    assert data.train_x.mean((0, 2, 3)).abs().max() < 1e-5


def test_cifar_pixel_layout_is_channel_major(tmp_path):
    """A row of the pickle is 1024 red, then 1024 green, then 1024 blue values, row-major."""
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    img = np.zeros((2, 3072), dtype=np.uint8)
    img[0, 1024 + 32 * 5 + 7] = 255  # green, row 5, column 7 of the first image
    for f in ("train", "test"):
        with open(folder / f, "wb") as fh:
            pickle.dump({"data": img, "fine_labels": [0, 1]}, fh)
    raw = load_data(cfg(name="cifar100", root=str(tmp_path))).train_x
    assert raw[0, 1].argmax().item() == 5 * 32 + 7 and raw[0, 1].max() > raw[0, 1].min()


@pytest.mark.parametrize("name,folder", [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")])
def test_cifar_missing_names_path_and_layout(tmp_path, name, folder):
    with pytest.raises(ConfigError, match=rf"{tmp_path / folder}.*pickle layout.*data.download=true"):
        load_data(cfg(name=name, root=str(tmp_path)))


def test_unknown_dataset():
    with pytest.raises(ConfigError, match="choose data=<one of digits, mnist, mnist1d, cifar10, cifar100, imagenet>"):
        load_data(cfg(name="svhn"))


# --- ImageNet: ImageFolder tree -----------------------------------------------------------------------

@pytest.fixture
def imagenet_root(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(2)
    for split, n in (("train", 6), ("val", 3)):
        for cls in ("n01", "n02"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                ext = "JPEG" if i % 2 else "png"
                Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(
                    tmp_path / split / cls / f"{i}.{ext}")
    return tmp_path


def imagenet_cfg(root):
    return cfg(name="imagenet", root=str(root), augment=True, crop_size=16, resize_size=18, workers=0)


def test_imagenet_folder_loader(imagenet_root):
    data = load_data(imagenet_cfg(imagenet_root))
    assert data.in_shape == (3, 16, 16) and data.num_classes == 2
    loader = data.train_batches(batch_size=4, seed=0)
    batches = [next(loader) for _ in range(4)]  # 12 images: 3 batches per epoch, then the next epoch
    assert all(x.shape == (4, 3, 16, 16) and y.shape == (4,) for x, y in batches)
    assert sorted(torch.cat([y for _, y in batches[:3]]).tolist()) == [0] * 6 + [1] * 6
    assert loader.state_dict() == {"epoch": 1, "position": 1}
    test = list(data.eval_batches("test", batch_size=4))
    assert [len(y) for _, y in test] == [4, 2] and torch.cat([y for _, y in test]).tolist() == [0, 0, 0, 1, 1, 1]
    # eval shares of 2 ranks partition the split: no padding, no duplicates
    shares = [torch.cat([y for _, y in data.eval_batches("train", 3, rank=r, world_size=2, limit=5)])
              for r in (0, 1)]
    assert [len(s) for s in shares] == [3, 2]


def test_imagenet_loader_resumes_mid_epoch(imagenet_root):
    data = load_data(imagenet_cfg(imagenet_root).copy())
    first = data.train_batches(batch_size=2, seed=3)
    labels = [next(first)[1] for _ in range(5)]
    resumed = data.train_batches(batch_size=2, seed=3)
    again = data.train_batches(batch_size=2, seed=3)
    for _ in range(2):
        next(again)
    resumed.load_state_dict(again.state_dict())
    assert all(torch.equal(next(resumed)[1], y) for y in labels[2:])


def test_imagenet_missing_names_path_and_layout(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(ConfigError, match=rf"{tmp_path} lacks val/.*<data.root>/train/<class>/\*.JPEG"):
        load_data(imagenet_cfg(tmp_path))


# --- TensorLoader -------------------------------------------------------------------------------------

def toy(n=20):
    return torch.arange(n, dtype=torch.float32).view(n, 1), torch.arange(n)


def test_tensor_loader_epochs_without_replacement():
    x, y = toy()
    loader = TensorLoader(x, y, batch_size=6, seed=0)  # 3 full batches per epoch, 2 examples dropped
    epoch = torch.cat([next(loader)[1] for _ in range(3)])
    assert len(set(epoch.tolist())) == 18
    assert not torch.equal(epoch, torch.cat([next(loader)[1] for _ in range(3)]))  # reshuffled


def test_tensor_loader_is_deterministic_and_resumes():
    x, y = toy()
    a, b = TensorLoader(x, y, 4, seed=7), TensorLoader(x, y, 4, seed=7)
    stream = [next(a)[1] for _ in range(13)]
    assert all(torch.equal(next(b)[1], s) for s in stream)
    c = TensorLoader(x, y, 4, seed=7)
    for _ in range(6):
        next(c)
    state = c.state_dict()
    d = TensorLoader(x, y, 4, seed=123)
    d.load_state_dict(state)
    assert all(torch.equal(next(d)[1], s) for s in stream[6:])
    assert not torch.equal(next(TensorLoader(x, y, 4, seed=8))[1], stream[0])


def test_tensor_loader_ranks_split_the_global_batch():
    x, y = toy()
    one = TensorLoader(x, y, 8, seed=1, augment=False)
    ranks = [TensorLoader(x, y, 8, seed=1, rank=r, world_size=2) for r in (0, 1)]
    for _ in range(5):
        assert torch.equal(next(one)[1], torch.cat([next(r)[1] for r in ranks]))
    with pytest.raises(ConfigError, match="multiple of 3"):
        TensorLoader(x, y, 8, world_size=3)


def test_tensor_loader_rejects_batch_larger_than_data():
    with pytest.raises(ConfigError, match="exceeds the 20 training examples"):
        TensorLoader(*toy(), batch_size=21)


# --- device augmentation ------------------------------------------------------------------------------

def test_crop_flip_matches_per_image_reference():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, 8, 10, generator=g)
    shift = torch.randint(0, 9, (2, 16), generator=g)
    flip = torch.rand(16, generator=g) < 0.5
    out = crop_flip(x, shift, flip, pad=4)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(16):
        ref = padded[i, :, shift[0, i]:shift[0, i] + 8, shift[1, i]:shift[1, i] + 10]
        assert torch.equal(out[i], ref.flip(2) if flip[i] else ref)
    centred = crop_flip(x, torch.full((2, 16), 4), torch.zeros(16, dtype=torch.bool))
    assert torch.equal(centred, x)


def test_augmented_loader_is_deterministic_and_shards_like_one_process(tmp_path):
    write_cifar(tmp_path, "cifar10")
    data = load_data(cfg(name="cifar10", root=str(tmp_path), augment=True))
    a, b = data.train_batches(8, seed=0), data.train_batches(8, seed=0)
    is_train_row = lambda x: [any(torch.equal(row, t) for t in data.train_x) for row in x]
    xa, _ = next(a)
    xb, _ = next(b)
    assert xa.shape == (8, 3, 32, 32) and torch.equal(xa, xb)
    assert not all(is_train_row(xa))  # augmented: shifted or flipped copies
    assert (xa == 0).any()  # padding shows at the borders of shifted crops
    ranks = [data.train_batches(8, seed=0, rank=r, world_size=2) for r in (0, 1)]
    assert torch.equal(torch.cat([next(r)[0] for r in ranks]), xa)
    plain = load_data(cfg(name="cifar10", root=str(tmp_path), augment=False))
    assert all(is_train_row(next(plain.train_batches(8, seed=0))[0]))


def test_eval_batches_partition_the_split():
    from bnrepro.data import Data

    x, y = toy(11)
    data = Data(x, y, x.clone(), y.clone(), 11)
    full = torch.cat([b for _, b in data.eval_batches("test", 4)])
    assert full.tolist() == list(range(11))
    shares = [torch.cat([b for _, b in data.eval_batches("test", 4, rank=r, world_size=3)]) for r in range(3)]
    assert sorted(torch.cat(shares).tolist()) == list(range(11))
    subset = torch.cat([b for _, b in data.eval_batches("train", 100, limit=5, seed=1)])
    assert len(subset) == 5 and len(set(subset.tolist())) == 5
    assert torch.equal(subset, torch.cat([b for _, b in data.eval_batches("train", 2, limit=5, seed=1)]))


def test_loader_workers_auto_shares_the_granted_cores(monkeypatch):
    """Workers and threads come from one place (bnrepro.resources), the same share of the granted cores."""
    from bnrepro.resources import resolve
    from bnrepro.schema import Data

    monkeypatch.delenv("BNREPRO_PARALLEL_JOBS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    assert resolve().workers == 8  # capped
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert resolve().workers == 4 == resolve().threads  # 16 cores among 4 torchrun processes
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert resolve().workers == 1
    assert resolve(workers=0).workers == 0
    with pytest.raises(ValueError, match="workers"):
        Data(name="imagenet", workers=-1)
