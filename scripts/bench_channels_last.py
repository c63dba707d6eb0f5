"""channels_last against the default (contiguous NCHW) memory layout for CIFAR ResNet-20, side by side.

Times full training steps (forward, backward, SGD) on random CIFAR-shaped batches, alternating the two
layouts in rounds so drift in machine load hits both alike. Prints a markdown report.
Usage: python scripts/bench_channels_last.py [--steps 20] [--rounds 3] [--batch-size 128]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from bnrepro.models import build_model


def make(layout, device):
    torch.manual_seed(0)
    model = build_model({"name": "resnet_cifar", "norm": "bn", "depth": 20}, (3, 32, 32), 10).to(device)
    model = model.to(memory_format=layout)
    return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def steps_per_s(model, opt, x, y, steps, device, autocast) -> float:
    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", default="cpu")
    p.add_argument("--autocast", action="store_true", help="bf16 autocast (the trainer's GPU path)")
    a = p.parse_args()
    device = torch.device(a.device)
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    torch.backends.cudnn.benchmark = True
    x = torch.randn(a.batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (a.batch_size,), device=device)
    layouts = {"contiguous (NCHW)": torch.contiguous_format, "channels_last (NHWC)": torch.channels_last}
    runs = {name: make(layout, device) for name, layout in layouts.items()}
    inputs = {name: x.contiguous(memory_format=layout) for name, layout in layouts.items()}
    rates = {name: [] for name in layouts}
    for _ in range(a.rounds):
        for name, (model, opt) in runs.items():
            rates[name].append(steps_per_s(model, opt, inputs[name], y, a.steps, device, a.autocast))
    base = statistics.median(rates["contiguous (NCHW)"])
    lines = [
        "# channels_last vs default layout, CIFAR ResNet-20 training steps", "",
        f"Command: `python scripts/bench_channels_last.py {' '.join(sys.argv[1:])}`".rstrip(), "",
        f"Device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}, batch {a.batch_size}, "
        f"bf16 autocast {'on' if a.autocast else 'off'}; median of {a.rounds} alternating rounds of "
        f"{a.steps} steps.", "",
        "| layout | steps/s (median) | rounds | relative |", "|---|---|---|---|",
    ]
    for name, r in rates.items():
        med = statistics.median(r)
        lines.append(f"| {name} | {med:.2f} | {', '.join(f'{v:.2f}' for v in r)} | {med / base:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)


if __name__ == "__main__":
    main()
