"""channels_last against the default (contiguous NCHW) memory layout for training steps, side by side.

CIFAR ResNet-20: NCHW vs channels_last. BN-Inception: NCHW vs channels_last as the trainer converts it
(bnrepro.models.to_channels_last: its padded average pools through NCHW only where the device's kernel is wrong,
pytorch/pytorch#188344) vs channels_last with every pool forced through NCHW, which prices that route.
Times full training steps (forward, backward, SGD) on random batches, alternating the variants in rounds so drift
in machine load hits all alike. Prints a markdown report.
Usage: python scripts/bench_channels_last.py [--steps 20] [--rounds 3] [--device cpu] [--autocast]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from bnrepro.models import build_model, to_channels_last
from bnrepro.models.inception import AvgPool2dNCHW, channels_last_avg_pool_is_right


def make(spec: dict, shape, classes: int, layout: str, device):
    torch.manual_seed(0)
    model = build_model({"norm": "bn", **spec}, shape, classes).to(device)
    if layout != "nchw":
        model = to_channels_last(model)
    if layout == "cl-route":
        for m in model.modules():
            if isinstance(m, AvgPool2dNCHW):
                m.via_nchw = True
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


LAYOUTS = {"nchw": "contiguous (NCHW)", "cl": "channels_last (as the trainer converts it)",
           "cl-route": "channels_last, padded avg pools forced through NCHW"}
NETS = [  # title, model config, input shape, classes, batch, layouts
    ("CIFAR ResNet-20", {"name": "resnet_cifar", "depth": 20}, (3, 32, 32), 10, 128, ("nchw", "cl")),
    ("BN-Inception (112 px)", {"name": "inception_bn"}, (3, 112, 112), 100, 16, ("nchw", "cl", "cl-route")),
]


def table(title, spec, shape, classes, batch, layouts, a, device) -> list[str]:
    x = torch.randn(batch, *shape, device=device)
    y = torch.randint(0, classes, (batch,), device=device)
    runs = {k: make(spec, shape, classes, k, device) for k in layouts}
    inputs = {k: x if k == "nchw" else x.contiguous(memory_format=torch.channels_last) for k in layouts}
    rates = {k: [] for k in layouts}
    for _ in range(a.rounds):
        for k, (model, opt) in runs.items():
            rates[k].append(steps_per_s(model, opt, inputs[k], y, a.steps, device, a.autocast))
    base = statistics.median(rates["nchw"])
    lines = [f"## {title}, batch {batch}", "", "| layout | steps/s (median) | rounds | relative |", "|---|---|---|---|"]
    for k, r in rates.items():
        med = statistics.median(r)
        lines.append(f"| {LAYOUTS[k]} | {med:.2f} | {', '.join(f'{v:.2f}' for v in r)} | {med / base:.2f}x |")
    return lines + [""]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--autocast", action="store_true", help="bf16 autocast (the trainer's GPU path)")
    a = p.parse_args()
    device = torch.device(a.device)
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    torch.backends.cudnn.benchmark = True
    right = channels_last_avg_pool_is_right(device.type)
    lines = [
        "# channels_last vs default layout, training steps", "",
        f"Command: `python scripts/bench_channels_last.py {' '.join(sys.argv[1:])}`".rstrip(), "",
        f"Device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}, bf16 autocast "
        f"{'on' if a.autocast else 'off'}; median of {a.rounds} alternating rounds of {a.steps} steps. This "
        f"torch's channels_last backward of a padded average pool on {device.type}: "
        f"{'right, so the trainer uses it' if right else 'wrong (pytorch/pytorch#188344), so the trainer routes through NCHW'}.",
        "",
    ]
    for net in NETS:
        lines += table(*net, a, device)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
