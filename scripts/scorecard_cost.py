"""What scoring one norm costs at the GPU scales: every job the scorecard launches for a norm (its arms; the
reference runs are the claims suite's) composed at each scale as the launcher composes it, its training images
(max_steps x batch) priced at the throughput results/bench/gpu.md measured for its model on one GPU.

    .venv/bin/python scripts/scorecard_cost.py [--scales cifar imagenet] [--out results/scorecard/gpu-cost.md]

Throughput (gpu.md): (b)'s channels_last + bf16 column for ResNet-20 (CIFAR), ResNet-50 and BN-Inception (224 px);
(c)'s fig1 median ms/step for the MLP. A model gpu.md has no rate for at that input (the CIFAR-stem BN-Inception)
is counted and left out, so each total is a lower bound, as gpu.md's own estimate is; evaluations, probes and
start-up are left out too.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rates(gpu_md: Path) -> tuple[dict[str, float], float | None, str]:
    """({model: training img/s}, the MLP's ms per step, the device line) from gpu.md."""
    text = gpu_md.read_text()
    img = {}
    for name, key in (("resnet20", "resnet_cifar"), ("resnet50", "resnet"), ("bn-inception", "inception_bn")):
        m = re.search(rf"^\| {name} \| \d+ \| [^|]+ \| [\d,]+ \| ([\d,]+) \|", text, re.M)
        if m:
            img[key] = float(m.group(1).replace(",", ""))
    m = re.search(r"^\| fig1 \| \d+ \| \w+ \| [\d.]+ \| ([\d.]+) \|", text, re.M)
    device = re.search(r"^Device: \*\*(.+?)\*\*", text, re.M)
    return img, float(m.group(1)) if m else None, device.group(1) if device else "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scales", nargs="+", default=["cifar", "imagenet"])
    parser.add_argument("--gpu-md", type=Path, default=ROOT / "results/bench/gpu.md")
    parser.add_argument("--out", type=Path, default=ROOT / "results/scorecard/gpu-cost.md")
    args = parser.parse_args()
    from bnrepro.report.properties import arms_at
    from bnrepro.scorecard.card import properties
    from bnrepro.scorecard.jobs import expand

    img, mlp_ms, device = rates(args.gpu_md)
    lines = ["# What scoring one norm costs at the GPU scales", "",
             f"Written by `python scripts/scorecard_cost.py` from `results/bench/gpu.md` (device: **{device}**): "
             "every job the scorecard launches for one norm, composed at each scale, its training images "
             "(max_steps x batch) at the throughput gpu.md measured for its model (channels_last + bf16; the MLP "
             f"at fig1's {mlp_ms} ms/step), one run at a time on one GPU. Reference runs (BN, no BN) are the "
             "claims suite's and not counted. Evaluations and start-up are left out, and a model gpu.md has no "
             "rate for is counted apart: each total is a lower bound.", ""]
    for scale in args.scales:
        lines += [f"## scale={scale}", "", "| property | runs | training images | GPU-hours | runs with no rate |",
                  "|---|---|---|---|---|"]
        total, unrated_total = 0.0, 0
        for claim, prop in properties():
            arms = arms_at(prop.arms, scale)
            if arms is None:
                lines.append(f"| {prop.name} ({claim.id}) | not declared at this scale | | | |")
                continue
            batch, master, compose = expand(claim.experiments[0], scale, [*arms, "model.norm=ln"])
            hours, images, unrated = 0.0, 0, 0
            for job in batch:
                cfg = compose.take(master, job)
                n = int(cfg.trainer.max_steps) * int(cfg.trainer.batch_size)
                images += n
                name = str(cfg.model.name)
                if name == "mlp" and mlp_ms:
                    hours += int(cfg.trainer.max_steps) * mlp_ms / 1000 / 3600
                elif name in img and not (name == "inception_bn" and scale == "cifar"):
                    hours += n / img[name] / 3600
                else:
                    unrated += 1
            total += hours
            unrated_total += unrated
            lines.append(f"| {prop.name} ({claim.id}) | {len(batch)} | {images:,} | {hours:.1f} | {unrated} |")
        lines += [f"| **one norm** | | | **{total:.1f}** | {unrated_total} |", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
