"""Datasets and loaders, behind one small interface the training loop uses at every scale.

Small datasets (digits, MNIST-1D, MNIST, CIFAR) live in one tensor on the training device: batches are index_select
calls on resident tensors and CIFAR's augmentation runs there on the whole batch, so no DataLoader worker,
copy or host sync sits in the way. ImageNet streams from its folder tree through a DataLoader.

Both kinds of dataset (`Data`, `FolderData`) offer what the loop calls:
- `data.in_shape`, `data.num_classes`;
- `data.train_batches(batch_size, seed, rank, world_size)`: an endless iterator of (x, y) on the
  device, with `state_dict()` / `load_state_dict()` for exact resume (checkpoint it with the model);
- `data.eval_batches(split, batch_size, rank, world_size, limit)`: the (x, y) batches of this rank's share
  of "test", of "val" (the held-out validation split, `data.has_val`) or of a fixed, un-augmented "train"
  subset (the train-test gap). The shares of all ranks
  partition the split exactly (no padding), so summed counts give exact accuracies.
`batch_size` is the global batch: each of `world_size` ranks draws its `batch_size // world_size` slice of
the same global batch, so N processes see exactly the batches one process would.
"""
from __future__ import annotations

import math
import os
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from bnrepro import ConfigError


def per_rank(batch_size: int, world_size: int) -> int:
    if batch_size % world_size:
        raise ConfigError(f"trainer.batch_size={batch_size} does not split over {world_size} processes: "
                          f"make it a multiple of {world_size}")
    return batch_size // world_size


@dataclass
class Data:
    """A dataset held as tensors on the training device."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    augment: bool = False  # random crop (pad 4) and horizontal flip of training batches, on the device
    # data.val_split's held-out part of the training set (never trained on); None when val_split is 0
    val_x: torch.Tensor | None = None
    val_y: torch.Tensor | None = None

    @property
    def has_val(self) -> bool:
        return self.val_x is not None

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    def train_batches(self, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> TensorLoader:
        return TensorLoader(self.train_x, self.train_y, batch_size, seed, rank, world_size, self.augment)

    def eval_batches(self, split: str, batch_size: int, rank: int = 0, world_size: int = 1,
                     limit: int | None = None, seed: int = 0):
        x, y = self._split(split, limit, seed)
        x, y = x[rank::world_size], y[rank::world_size]  # views: strided shares, no copy
        for i in range(0, len(x), batch_size):
            yield x[i:i + batch_size], y[i:i + batch_size]

    def _split(self, split: str, limit: int | None, seed: int):
        if split == "test":
            return self.test_x[:limit], self.test_y[:limit]
        if split == "val":
            if not self.has_val:
                raise ValueError("no validation split: set data.val_split > 0")
            return self.val_x[:limit], self.val_y[:limit]
        if split != "train":
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        if limit is None or limit >= len(self.train_x):
            return self.train_x, self.train_y
        # a fixed random subset (the files may be sorted by class), gathered once and kept
        key = (limit, seed)
        if getattr(self, "_train_subset_key", None) != key:
            idx = torch.randperm(len(self.train_x), generator=torch.Generator().manual_seed(seed))[:limit]
            idx = idx.to(self.train_x.device)
            self._train_subset = self.train_x.index_select(0, idx), self.train_y.index_select(0, idx)
            self._train_subset_key = key
        return self._train_subset


def load_digits(cfg) -> Data:
    """scikit-learn's 1,797 real 8x8 digits, scaled to [0, 1], with a fixed stratified split."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    x, y = sk_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=cfg.test_fraction, stratify=y,
                                              random_state=cfg.split_seed)
    as_images = lambda a: torch.tensor(a, dtype=torch.float32).div_(16.0).view(-1, 1, 8, 8)
    return Data(as_images(x_tr), torch.tensor(y_tr), as_images(x_te), torch.tensor(y_te), 10)


# The files each loader reads, declared once: the loaders and check_available (the door) both test them.
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
# torchvision's CIFAR layouts: folder, training files, test files, label key, number of classes
CIFAR = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels", 10),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "fine_labels", 100),
}


def _root(cfg) -> Path:
    if cfg.root is None:
        raise ConfigError(f"data.root is null: set data.root to the folder that holds the {cfg.name} files")
    return Path(cfg.root).expanduser()


def _mnist_missing(cfg) -> ConfigError | None:
    """torchvision's MNIST layout: <root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte."""
    raw = _root(cfg) / "MNIST" / "raw"
    if all((raw / f).is_file() for f in MNIST_FILES):
        return None
    return ConfigError(f"MNIST not found under {raw} (expects the uncompressed IDX files {', '.join(MNIST_FILES)}): "
                       "set data.root to the folder that holds MNIST/raw, or add data.download=true")


def _idx_problem(path: Path) -> str | None:
    """What is wrong with an uncompressed IDX file (MNIST's format), or None: the magic (0, 0, 0x08 = ubyte,
    ndim), then ndim big-endian sizes whose product is the number of bytes after them."""
    data = path.read_bytes()
    if len(data) < 4 or data[:3] != b"\x00\x00\x08" or not 1 <= data[3] <= 3:
        return "not an IDX file of bytes (its first 4 bytes are not 0 0 8 ndim)"
    header = 4 + 4 * data[3]
    sizes = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(data[3])]
    if len(data) < header or math.prod(sizes) != len(data) - header:
        return f"truncated or padded (its header says {sizes}, {len(data) - header} data bytes follow)"
    return None


def _cifar_missing(cfg) -> ConfigError | None:
    folder, train_files, test_files = CIFAR[cfg.name][:3]
    root = _root(cfg)
    missing = [f for f in train_files + test_files if not (root / folder / f).is_file()]
    if not missing:
        return None
    return ConfigError(
        f"{cfg.name} not found: {root / folder} lacks {', '.join(missing)} (expects torchvision's "
        f"python-pickle layout <data.root>/{folder}/{{{','.join(train_files + test_files)}}}): set data.root "
        "to the folder that holds it, or add data.download=true")


def _imagenet_missing(cfg) -> ConfigError | None:
    root = _root(cfg)
    missing = [s for s in ("train", "val") if not (root / s).is_dir()]
    if not (missing or cfg.download):
        return None
    why = ("ImageNet cannot be downloaded automatically: set data.download=false" if cfg.download
           else f"imagenet not found: {root} lacks {' and '.join(s + '/' for s in missing)}")
    return ConfigError(f"{why} (expects the ImageFolder layout <data.root>/train/<class>/*.JPEG and "
                       "<data.root>/val/<class>/*.JPEG, e.g. from torchvision's or timm's preparation "
                       "scripts): set data.root or DATA_DIR to that folder")


def check_available(data_cfg) -> None:
    """Raise the loader's own ConfigError (path and expected layout) when a file it will read is absent.
    Cheap (existence only, nothing opened), so the door and train() call it before a run dir is made.
    A no-op for generated data (digits, mnist1d) and where data.download=true will fetch the files;
    ImageNet is never downloaded, so data.download=true is refused for it here as its loader does."""
    cfg = OmegaConf.create(data_cfg) if isinstance(data_cfg, dict) else data_cfg
    if cfg.name == "imagenet":
        error = _imagenet_missing(cfg)
    elif cfg.name == "mnist" and not cfg.download:
        error = _mnist_missing(cfg)
    elif cfg.name in CIFAR and not cfg.download:
        error = _cifar_missing(cfg)
    else:
        error = None
    if error is not None:
        raise error


def load_mnist(cfg) -> Data:
    """torchvision's MNIST layout: <root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte."""
    from torchvision.datasets import MNIST

    root = _root(cfg)
    try:
        train, test = (MNIST(root, train=t, download=cfg.download) for t in (True, False))
    except (RuntimeError, AssertionError, ValueError) as e:
        # torchvision's "Dataset not found" (RuntimeError), or a file that is no IDX file (an assertion, or a
        # RuntimeError from a wrong size): say where, and which file, and what it expected
        raw = root / "MNIST" / "raw"
        bad = next(((f, why) for f in MNIST_FILES if (raw / f).is_file() and (why := _idx_problem(raw / f))), None)
        error = _mnist_missing(cfg) or (bad and ConfigError(
            f"MNIST file {raw / bad[0]} is damaged: {bad[1]}; replace it (or delete MNIST/raw and add "
            "data.download=true)"))
        if not error:
            raise
        raise error from e
    as_images = lambda ds: ds.data.float().div_(255.0).unsqueeze(1)
    return Data(as_images(train), train.targets.clone(), as_images(test), test.targets.clone(), 10)


def load_cifar(cfg) -> Data:
    """The python pickles of torchvision's CIFAR-10/100 layout, read directly.

    torchvision's dataset classes would re-check every file's md5 at each start; reading the pickles
    ourselves is as simple and also accepts the tiny files the tests write.
    """
    folder, train_files, test_files, label_key, num_classes = CIFAR[cfg.name]
    root = _root(cfg)
    if cfg.download and not (root / folder).is_dir():
        from torchvision.datasets import CIFAR10, CIFAR100

        (CIFAR10 if cfg.name == "cifar10" else CIFAR100)(root, download=True)
    error = _cifar_missing(cfg)
    if error is not None:
        raise error

    def read(files):
        xs, ys = [], []
        for f in files:
            with open(root / folder / f, "rb") as fh:
                batch = pickle.load(fh, encoding="latin1")
            xs.append(torch.as_tensor(batch["data"], dtype=torch.uint8).view(-1, 3, 32, 32))
            ys.append(torch.as_tensor(batch[label_key], dtype=torch.long))
        return torch.cat(xs).float().div_(255.0), torch.cat(ys)

    return Data(*read(train_files), *read(test_files), num_classes, augment=cfg.augment)


def load_imagenet(cfg, device, workers: int | None = None) -> FolderData:
    error = _imagenet_missing(cfg)
    if error is not None:
        raise error
    if workers is None:  # direct callers; training passes the number resolved once at startup
        from bnrepro.resources import resolve

        workers = resolve(workers=cfg.workers).workers
    return FolderData(_root(cfg), cfg, torch.device(device), workers)


def cache_dir(cfg) -> Path:
    """Where generated datasets are kept: data.cache_dir, else $BNREPRO_CACHE_DIR (data/mnist1d.yaml reads it),
    else $XDG_CACHE_HOME/bnrepro, else ~/.cache/bnrepro."""
    if cfg.cache_dir:
        return Path(cfg.cache_dir).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bnrepro"


def mnist1d_args(cfg) -> dict:
    """The generator's arguments: the package's defaults (get_dataset_args) with our sample count, seed and
    train split. The download URL is dropped: we only ever generate."""
    from mnist1d.data import get_dataset_args

    n, split = int(cfg.num_samples), float(cfg.train_split)
    if n < 20 or n % 10:
        raise ConfigError(f"data.num_samples={n}: set a multiple of 10 (the generator draws num_samples // 10 "
                          "examples per digit), at least 20")
    if not 0 < split < 1 or not 0 < int(n * split) < n:
        raise ConfigError(f"data.train_split={split}: set the training fraction strictly between 0 and 1")
    args = get_dataset_args(as_dict=True)
    args.pop("url", None)
    args.update(num_samples=n, seed=int(cfg.seed), train_split=split)
    return args


def generate_mnist1d(args: dict) -> dict:
    """Run mnist1d's own generator (make_dataset: offline, seeded by args['seed']). It seeds and draws from the
    global `random` and numpy RNGs, so their states are restored afterwards: loading data must not change the
    random numbers anything else in the process draws."""
    import random

    import numpy as np
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    states = random.getstate(), np.random.get_state()
    try:
        raw = make_dataset(ObjectView(dict(args)))
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
    as_seqs = lambda a: torch.as_tensor(a, dtype=torch.float32).unsqueeze(1)  # (N, 1, 40): one channel
    as_labels = lambda a: torch.as_tensor(a, dtype=torch.long)
    return {"train_x": as_seqs(raw["x"]), "train_y": as_labels(raw["y"]),
            "test_x": as_seqs(raw["x_test"]), "test_y": as_labels(raw["y_test"])}


def load_mnist1d(cfg) -> Data:
    """MNIST-1D (Greydanus & Kobak 2024): 1-D digit templates padded, sheared, translated and noised into
    sequences of 40, generated by the `mnist1d` package and never downloaded. Generating 20k samples takes
    seconds, so the tensors are cached in <cache dir>/mnist1d-<hash>.pt, keyed by every generator argument
    and the package version: a changed argument generates anew, an unchanged one loads the file.

    Shape (N, 1, 40): one channel of 40 positions, what the 1-D conv nets take; the MLP flattens it to 40."""
    import hashlib
    import json
    from importlib.metadata import version

    args = mnist1d_args(cfg)
    key = json.dumps({**args, "mnist1d": version("mnist1d")}, sort_keys=True)
    path = cache_dir(cfg) / f"mnist1d-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"
    tensors = None
    if path.exists():
        try:
            tensors = torch.load(path, weights_only=True)
        except Exception as e:  # a damaged cache file is regenerated, never trusted
            print(f"warning: {path} is unreadable ({type(e).__name__}): generating MNIST-1D anew", file=sys.stderr)
    if tensors is None:
        tensors = generate_mnist1d(args)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # written whole, then renamed: never torn
        torch.save(tensors, tmp)
        os.replace(tmp, path)
    return Data(tensors["train_x"], tensors["train_y"], tensors["test_x"], tensors["test_y"], 10)


LOADERS = {"digits": load_digits, "mnist": load_mnist, "mnist1d": load_mnist1d, "cifar10": load_cifar,
           "cifar100": load_cifar}


def val_fraction(cfg) -> float:
    fraction = cfg.val_split
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"data.val_split={fraction}: set a fraction of the training set in [0, 1), 0 for none")
    return fraction


def stratified_split(y: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, validation indices) of labels y: round(fraction * n_c) examples of each class c go to
    validation, drawn with a generator seeded by `seed`, so every class keeps its share and the split is the
    same for every run that shares data.split_seed (seeds of a sweep vary the init and the order, not the
    split). Both index lists are sorted, so the training set keeps its original order."""
    gen = torch.Generator().manual_seed(seed)
    val = []
    for c in torch.unique(y).tolist():
        members = (y == c).nonzero().flatten()
        take = int(round(fraction * len(members)))
        val.append(members[torch.randperm(len(members), generator=gen)[:take]])
    val_idx = torch.cat(val).sort().values
    keep = torch.ones(len(y), dtype=torch.bool)
    keep[val_idx] = False
    return keep.nonzero().flatten(), val_idx


def load_data(cfg, device: torch.device | str = "cpu", workers: int | None = None) -> Data | FolderData:
    """The dataset of cfg on device; `workers` (DataLoader workers, for streamed datasets) comes from
    bnrepro.resources, resolved once at startup."""
    fraction = val_fraction(cfg)
    if cfg.name == "imagenet":
        if fraction > 0:
            raise ConfigError(f"data.val_split={fraction}: not supported for imagenet (streamed from folders; "
                              "its val/ folder is the test set): set data.val_split=0")
        if cfg.train_examples is not None:
            raise ConfigError(f"data.train_examples={cfg.train_examples}: not supported for imagenet (streamed "
                              "from folders): set data.train_examples=null")
        return load_imagenet(cfg, device, workers)
    if cfg.name not in LOADERS:
        raise ConfigError(f"unknown dataset '{cfg.name}': choose data=<one of {', '.join([*LOADERS, 'imagenet'])}>")
    data = LOADERS[cfg.name](cfg)
    train_x, train_y, val_x, val_y = data.train_x, data.train_y, None, None
    if fraction > 0:
        # carved from the training data only: the test set is never touched, and the loader never sees val
        train_idx, val_idx = stratified_split(train_y, fraction, cfg.split_seed)
        if len(val_idx) == 0 or len(train_idx) == 0:
            raise ConfigError(f"data.val_split={fraction} leaves an empty split of {len(train_y)} training "
                              "examples: pick a fraction between them")
        train_x, train_y, val_x, val_y = train_x[train_idx], train_y[train_idx], train_x[val_idx], train_y[val_idx]
    if cfg.train_examples is not None and cfg.train_examples < len(train_y):
        # after the validation split, so validation stays the set every other claim selects on; drawn with the
        # split's seed (a seed of its own would be a second dataset axis), stratified, in the original order
        _, subset = stratified_split(train_y, cfg.train_examples / len(train_y), cfg.split_seed or 0)
        train_x, train_y = train_x[subset], train_y[subset]
    # normalize with the (remaining) training set's per-channel statistics, computed once
    dims = [0, *range(2, train_x.dim())]
    mean, std = train_x.mean(dims, keepdim=True), train_x.std(dims, keepdim=True).clamp_min(1e-6)
    prep = lambda t: None if t is None else (t.sub(mean).div_(std) if t.is_floating_point() else t).to(device)
    return Data(prep(train_x), prep(train_y), prep(data.test_x), prep(data.test_y), data.num_classes,
                augment=cfg.augment and train_x.dim() == 4, val_x=prep(val_x), val_y=prep(val_y))


def crop_flip(x: torch.Tensor, shift: torch.Tensor, flip: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Crop each image of an NCHW batch at (shift[0], shift[1]) out of its zero-padded copy, then flip where
    `flip` is true: two gathers on the device for the whole batch (as airbench / hlb-CIFAR10 do), no Python
    loop per image. shift holds offsets in [0, 2 * pad], shape (2, N); flip is a bool tensor of shape (N,).
    """
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = (shift[0, :, None] + torch.arange(h, device=x.device)).view(n, 1, h, 1).expand(n, c, h, w + 2 * pad)
    cols = (shift[1, :, None] + torch.arange(w, device=x.device)).view(n, 1, 1, w).expand(n, c, h, w)
    out = padded.gather(2, rows).gather(3, cols)
    return torch.where(flip.view(n, 1, 1, 1), out.flip(3), out)


class TensorLoader:
    """An endless stream of shuffled mini-batches drawn without replacement from device-resident tensors.

    Reshuffles at each epoch with its own generator, so a seed fixes the batch order (and the augmentation)
    and the loader's state (`state_dict`) is enough to resume it exactly. With world_size > 1 every rank
    draws the same global batch of `batch_size` and keeps its own slice of it.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1, augment: bool = False):
        if batch_size > len(x):
            raise ConfigError(f"trainer.batch_size={batch_size} exceeds the {len(x)} training examples: lower it")
        self.x, self.y, self.batch_size, self.augment = x, y, batch_size, augment
        self.local = per_rank(batch_size, world_size)
        self.rank_slice = slice(rank * self.local, (rank + 1) * self.local)
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.steps_per_epoch = len(x) // batch_size  # the last partial batch is dropped (BN needs m > 1)
        self.position = self.steps_per_epoch  # start by shuffling
        self.order = None

    def __iter__(self):
        return self

    def __next__(self):
        if self.position >= self.steps_per_epoch:
            self.order = torch.randperm(len(self.x), generator=self.generator).to(self.x.device)
            self.position = 0
        idx = self.order[self.position * self.batch_size:(self.position + 1) * self.batch_size][self.rank_slice]
        self.position += 1
        x = self.x.index_select(0, idx)
        return (self._augment(x) if self.augment else x), self.y.index_select(0, idx)

    def _augment(self, x):
        """Random crop (pad 4) and flip; drawn for the whole global batch, then this rank's share kept, so
        the numbers are the same at any world size."""
        pad, n = 4, self.batch_size
        shift = torch.randint(0, 2 * pad + 1, (2, n), generator=self.generator)[:, self.rank_slice]
        flip = (torch.rand(n, generator=self.generator) < 0.5)[self.rank_slice]
        return crop_flip(x, shift.to(x.device, non_blocking=True), flip.to(x.device, non_blocking=True), pad)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "position": self.position, "order": self.order}

    def load_state_dict(self, state: dict) -> None:
        # a checkpoint loaded with map_location="cuda" brings the state back on the GPU; generators take CPU bytes
        self.generator.set_state(state["generator"].cpu())
        self.position = state["position"]
        self.order = None if state["order"] is None else state["order"].to(self.x.device)


class ResumableDistributedSampler(torch.utils.data.DistributedSampler):
    """DistributedSampler (no padding: drop_last) that can start partway through an epoch, for resume."""

    start = 0  # index into this rank's share of the epoch

    def __iter__(self):
        return iter(list(super().__iter__())[self.start:])


class FolderLoader:
    """An endless stream of (x, y) device batches from a DataLoader over an image folder, one epoch after
    another; `state_dict` (epoch, batches done) lets a resumed run continue with the next batch."""

    def __init__(self, dataset, batch_size: int, seed: int, rank: int, world_size: int, workers: int,
                 device: torch.device):
        self.local, self.seed, self.device = per_rank(batch_size, world_size), seed, device
        self.sampler = ResumableDistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True,
                                                   seed=seed, drop_last=True)
        # the loader's generator seeds the workers' augmentation; it is reseeded per (epoch, position)
        self.generator = torch.Generator()
        self.loader = torch.utils.data.DataLoader(
            dataset, self.local, sampler=self.sampler, num_workers=workers, drop_last=True,
            pin_memory=device.type == "cuda", persistent_workers=workers > 0, generator=self.generator,
            prefetch_factor=4 if workers > 0 else None)
        self.steps_per_epoch = len(self.sampler) // self.local
        self.epoch, self.position, self.batches = 0, 0, None

    def __iter__(self):
        return self

    def __next__(self):
        if self.position >= self.steps_per_epoch:
            self.epoch, self.position, self.batches = self.epoch + 1, 0, None
        if self.batches is None:
            self.sampler.set_epoch(self.epoch)
            self.sampler.start = self.position * self.local
            self.generator.manual_seed(hash((self.seed, self.epoch, self.position, self.sampler.rank)))
            self.batches = iter(self.loader)
        x, y = next(self.batches)
        self.position += 1
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position, self.batches = state["epoch"], state["position"], None


class FolderData:
    """ImageNet in torchvision's ImageFolder layout, streamed: RandomResizedCrop + flip for training,
    resize + center crop for evaluation, decoded by DataLoader workers into pinned memory."""

    MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    has_val = False  # data.val_split is refused for ImageNet (load_data)

    def __init__(self, root: Path, cfg, device: torch.device, workers: int):
        from torchvision import datasets, transforms as T

        self.root, self.device, self.workers = root, device, workers
        normalize = [T.ToTensor(), T.Normalize(self.MEAN, self.STD)]
        crop = cfg.crop_size
        train_tf = ([T.RandomResizedCrop(crop), T.RandomHorizontalFlip()] if cfg.augment
                    else [T.Resize(cfg.resize_size), T.CenterCrop(crop)])
        self.eval_tf = T.Compose([T.Resize(cfg.resize_size), T.CenterCrop(crop), *normalize])
        self.train = datasets.ImageFolder(str(root / "train"), T.Compose([*train_tf, *normalize]))
        self.test = datasets.ImageFolder(str(root / "val"), self.eval_tf)
        if self.train.classes != self.test.classes:
            raise ConfigError(f"{root}/train and {root}/val hold different class folders: make them match")
        self.num_classes, self.in_shape = len(self.train.classes), (3, crop, crop)
        self._eval_loaders = {}

    def train_batches(self, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> FolderLoader:
        return FolderLoader(self.train, batch_size, seed, rank, world_size, self.workers, self.device)

    def eval_batches(self, split: str, batch_size: int, rank: int = 0, world_size: int = 1,
                     limit: int | None = None, seed: int = 0):
        key = (split, batch_size, rank, world_size, limit, seed)
        if key not in self._eval_loaders:  # built once: their workers persist between evaluations
            if split == "test":
                dataset, n = self.test, len(self.test)
                idx = torch.arange(n if limit is None else min(limit, n))
            elif split == "train":  # a fixed subset of training images with the evaluation transform
                from torchvision import datasets

                dataset = datasets.ImageFolder(str(self.root / "train"), self.eval_tf)
                n = len(dataset) if limit is None else min(limit, len(dataset))
                idx = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:n]
            else:
                raise ValueError(f"split must be 'train' or 'test', got {split!r}")
            share = torch.utils.data.Subset(dataset, idx[rank::world_size].tolist())  # exact, unpadded
            self._eval_loaders[key] = torch.utils.data.DataLoader(
                share, batch_size, shuffle=False, num_workers=self.workers, pin_memory=self.device.type == "cuda",
                persistent_workers=self.workers > 0)
        for x, y in self._eval_loaders[key]:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
