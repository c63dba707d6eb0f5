"""CPU inference speed of BN-folded vs unfolded models, measured side by side in one run.

    python scripts/bench_fold.py [--batch 8] [--rounds 7] [--threads 2]

Rounds alternate the two models so that machine load hits both alike; the figure is the ratio of medians.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from bnrepro.inference import fold_bn
from bnrepro.models import build_model, count_params

MODELS = {"resnet50": {"name": "resnet", "arch": "resnet50"}, "inception_bn": {"name": "inception_bn"}}


@torch.inference_mode()
def seconds_per_batch(model, x) -> float:
    start = time.perf_counter()
    model(x)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 224, 224)
    print(f"torch {torch.__version__}, CPU, {args.threads} threads, batch {args.batch} of 3x224x224, "
          f"median of {args.rounds} rounds")
    print("| model | params | unfolded ms/batch | folded ms/batch | speed-up | max diff / max logit |")
    print("|---|---|---|---|---|---|")
    for name, cfg in MODELS.items():
        model = build_model(cfg, (3, 224, 224), 1000).eval()
        folded = fold_bn(model)
        with torch.inference_mode():
            want = model(x)  # also the warm-up of both
            diff = ((want - folded(x)).abs().max() / want.abs().max()).item()
        times = {"unfolded": [], "folded": []}
        for _ in range(args.rounds):
            times["unfolded"].append(seconds_per_batch(model, x))
            times["folded"].append(seconds_per_batch(folded, x))
        plain, fused = (statistics.median(times[k]) * 1e3 for k in ("unfolded", "folded"))
        print(f"| {name} | {count_params(model) / 1e6:.2f}M | {plain:.1f} | {fused:.1f} | {plain / fused:.2f}x "
              f"| {diff:.1e} |")


if __name__ == "__main__":
    main()
