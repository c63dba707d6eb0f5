"""The trainer (bnrepro.loop.fit) against a bare PyTorch loop on the same model, data and batch, side by side.

The bare loop is the minimum a training step needs: index a batch out of resident tensors, forward,
cross-entropy, zero_grad, backward, SGD step. The trainer's steady-state time per step is read from its
own metrics (wall time between its last two evaluations, eval_every steps apart, so it includes its
bookkeeping and one evaluation). Rounds alternate the two so machine load hits both alike.
Usage: python scripts/bench_trainer.py [--models mlp resnet20] [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from bnrepro import CONFIGS, rundir
from bnrepro.data import load_data
from bnrepro.loop import Speed, pick_device
from bnrepro.models import build_model, to_channels_last
from bnrepro.train import train


# model -> (config overrides, steps per measured interval)
CASES = {
    "mlp": (["model=mlp", "trainer.batch_size=60"], 1000),
    "resnet20": (["model=resnet_cifar", "model.depth=20", "data=cifar10", "data.augment=false",
                  "trainer.batch_size=32", "trainer.train_eval_examples=32"], 60),
}


def write_cifar(root: Path, n: int = 512, n_test: int = 32) -> None:
    """Random CIFAR-10-shaped pickles: the benchmark needs the shape of the data, not its content. A small
    test set keeps the one evaluation per interval from dominating the step time being compared."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name, size in [(f"data_batch_{i}", n) for i in range(1, 6)] + [("test_batch", n_test)]:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (size, 3072), dtype=np.uint8),
                         "labels": rng.integers(0, 10, size).tolist()}, f)


def trainer_step_s(overrides, steps, run_dir) -> float:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, f"trainer.max_steps={3 * steps}", f"trainer.eval_every={steps}",
                                          f"trainer.ckpt_every={10 * steps}", "logger=none",
                                          "trainer.progress=none"])
    train(cfg, run_dir=run_dir)
    rows = rundir.read_metrics(run_dir)
    return (rows[-1]["wall_s"] - rows[-2]["wall_s"]) / steps, cfg


def bare_step_s(cfg, steps) -> float:
    device = pick_device(cfg.trainer.device)
    torch.manual_seed(cfg.seed)
    data = load_data(cfg.data, device)
    model = build_model(cfg.model, data.in_shape, data.num_classes).to(device)
    speed = Speed(cfg, device, data.in_shape)  # the same precision and layout choices as the trainer
    if speed.channels_last:
        model = to_channels_last(model)
    # the same update as the trainer's (bnrepro.optim: multi-tensor SGD), written out in plain torch
    opt = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr, momentum=cfg.optim.momentum, foreach=True)
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, len(data.train_x), (2 * steps, cfg.trainer.batch_size), generator=g).to(device)

    def run(batches):
        for i in batches:
            with speed.autocast():
                loss = F.cross_entropy(model(speed.input(data.train_x[i])), data.train_y[i])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    run(idx[:steps])  # warm-up, as the trainer's first interval is
    start = time.perf_counter()
    run(idx[steps:])
    return (time.perf_counter() - start) / steps


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")
    torch.set_num_threads(a.threads)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DATA_DIR"] = tmp
        write_cifar(Path(tmp))
        for name in a.models:
            overrides, steps = CASES[name]
            overrides = ["trainer.train_eval_examples=100", *overrides, f"trainer.threads={a.threads}"]
            ours, bare = [], []
            for r in range(a.rounds):
                t, cfg = trainer_step_s(overrides, steps, Path(tmp) / f"{name}-{r}")
                ours.append(t)
                bare.append(bare_step_s(cfg, steps))
            results[name] = (ours, bare, steps, cfg.trainer.batch_size)
    device = pick_device("auto")
    lines = ["# Trainer vs bare PyTorch loop", "",
             f"Command: `python scripts/bench_trainer.py {' '.join(sys.argv[1:])}`".rstrip(), "",
             f"Device {device}, {a.threads} torch threads, torch {torch.__version__}; best of {a.rounds} "
             "alternating rounds. Trainer time per step = wall time between its last two evaluations / steps "
             "(includes one evaluation: digits' 360 test examples + 100 train examples for the MLP, 32 + 32 "
             "random CIFAR-shaped examples for ResNet-20).", "",
             "| model | batch | steps per interval | trainer ms/step | bare ms/step | ratio (trainer / bare) |",
             "|---|---|---|---|---|---|"]
    for name, (ours, bare, steps, batch) in results.items():
        o, b = min(ours), min(bare)  # best of the rounds, as timeit does: load only ever adds time
        lines.append(f"| {name} | {batch} | {steps} | {o * 1e3:.2f} | {b * 1e3:.2f} | **{o / b:.3f}x** |")
    lines += ["", "Per round (trainer / bare, ms): " + "; ".join(
        f"{n}: " + ", ".join(f"{o * 1e3:.2f}/{b * 1e3:.2f}" for o, b in zip(r[0], r[1])) for n, r in results.items())]
    text = "\n".join(lines) + "\n"
    print(text)


if __name__ == "__main__":
    main()
