"""The tensor-resident loader against a torch DataLoader on CIFAR-shaped random data, side by side.

Both deliver shuffled, augmented (random crop pad 4 + flip) batches of 50,000 3x32x32 float images to the
training device: ours with index_select and two gathers per batch, the DataLoader with per-image
torchvision transforms in `--workers` worker processes. Prints a markdown report.
Usage: python scripts/bench_loader.py [--batches 100] [--batch-size 128] [--workers 2]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from torch.utils.data import DataLoader, TensorDataset
from torchvision.transforms import v2 as T

from bnrepro.data import TensorLoader


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def rate(batches, n, device) -> float:
    """Batches per second over n batches, after 5 warm-up batches."""
    for _ in range(5):
        x, _ = next(batches)
    sync(device)
    start = time.perf_counter()
    for _ in range(n):
        x, y = next(batches)
        x.sum()  # touch the data on the device, as a model would
    sync(device)
    return n / (time.perf_counter() - start)


class Augmented(TensorDataset):
    def __init__(self, x, y):
        super().__init__(x, y)
        self.tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()])

    def __getitem__(self, i):
        x, y = super().__getitem__(i)
        return self.tf(x), y


def endless(loader, device):
    while True:
        for x, y in loader:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=min(4, len(os.sched_getaffinity(0))))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args()
    device = torch.device(a.device)
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    x = torch.randn(50_000, 3, 32, 32)
    y = torch.randint(0, 10, (50_000,))
    ours = rate(TensorLoader(x.to(device), y.to(device), a.batch_size, seed=0, augment=True), a.batches, device)
    dl = DataLoader(Augmented(x, y), a.batch_size, shuffle=True, drop_last=True, num_workers=a.workers,
                    pin_memory=device.type == "cuda", persistent_workers=a.workers > 0)
    theirs = rate(endless(dl, device), a.batches, device)
    lines = [
        "# Tensor-resident loader vs torch DataLoader (CIFAR-shaped, augmented)", "",
        f"Command: `python scripts/bench_loader.py {' '.join(sys.argv[1:])}`".rstrip(), "",
        f"Device {device}, {len(os.sched_getaffinity(0))} cores, torch {torch.__version__}, batch {a.batch_size}, "
        f"{a.batches} batches after 5 warm-up; DataLoader with {a.workers} workers and per-image "
        "torchvision v2 RandomCrop(32, padding=4) + RandomHorizontalFlip.", "",
        "| loader | batches/s | images/s |", "|---|---|---|",
        f"| bnrepro TensorLoader (augment on device) | {ours:.1f} | {ours * a.batch_size:,.0f} |",
        f"| torch DataLoader ({a.workers} workers) | {theirs:.1f} | {theirs * a.batch_size:,.0f} |", "",
        f"Speed-up of the tensor-resident loader: **{ours / theirs:.1f}x**.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)


if __name__ == "__main__":
    main()
