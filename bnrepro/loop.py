"""The one training loop, for every model, norm and scale: step, evaluate, record, stop on divergence.

Hot path rule: a training step launches work and never waits for it. The loss is accumulated on the device
and read back only at evaluation steps, which is also where divergence is detected.
"""
from __future__ import annotations

import copy
import math
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

import bnrepro
from bnrepro.data import TensorLoader, load_data
from bnrepro.models import build_model, count_params
from bnrepro.norm import validate_batch
from bnrepro.optim import build_optimizer
from bnrepro.probes import Probe
from bnrepro.tracking import Tracker

EVAL_BATCH = 1000


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def git_rev() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(bnrepro.__file__).parent,
                              capture_output=True, text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@torch.inference_mode()
def evaluate(model, x, y, batch_size: int = EVAL_BATCH) -> tuple[float, float]:
    """(accuracy, mean loss) over all of x, in eval mode, with one host sync."""
    was_training = model.training
    model.eval()
    loss, correct = torch.zeros((), device=x.device), torch.zeros((), device=x.device, dtype=torch.long)
    for i in range(0, len(x), batch_size):
        logits = model(x[i:i + batch_size]).float()
        loss += F.cross_entropy(logits, y[i:i + batch_size], reduction="sum")
        correct += (logits.argmax(1) == y[i:i + batch_size]).sum()
    model.train(was_training)
    return correct.item() / len(x), loss.item() / len(x)


def final_evals(model, cfg, data) -> dict[str, float]:
    """Test accuracy under each inference variant of claim C8 (population vs batch statistics)."""
    out = {}
    for variant in cfg.trainer.final_eval:
        if variant == "ema":
            out["ema"] = evaluate(model, data.test_x, data.test_y)[0]
        elif variant in ("precise", "precise_biased"):
            from bnrepro.inference import precise_bn

            recalibrated = copy.deepcopy(model)
            batches = TensorLoader(data.train_x, data.train_y, cfg.trainer.batch_size, seed=cfg.seed + 1)
            precise_bn(recalibrated, batches, cfg.trainer.precise_bn_examples, unbiased=variant == "precise")
            out[variant] = evaluate(recalibrated, data.test_x, data.test_y)[0]
        elif variant == "batch":
            from bnrepro.inference import batch_statistics

            with batch_statistics(model):  # test batches of the training batch size, as at training time
                out["batch"] = evaluate(model, data.test_x, data.test_y, cfg.trainer.batch_size)[0]
        else:
            raise bnrepro.ConfigError(f"unknown trainer.final_eval entry '{variant}': use ema, precise, "
                                      "precise_biased or batch")
    return out


def progress_bar(cfg, total: int, multirun: bool):
    show = cfg.trainer.progress == "bar" or (cfg.trainer.progress == "auto" and sys.stderr.isatty() and not multirun)
    return tqdm(total=total, desc=cfg.name, unit="step", dynamic_ncols=True) if show else None


def fit(cfg, run_dir: Path, multirun: bool = False) -> dict:
    """Train cfg's model on cfg's data; write metrics.jsonl and summary.json into run_dir; return the summary."""
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg.trainer.device)
    data = load_data(cfg.data, device)
    model = build_model(cfg.model, data.in_shape, data.num_classes).to(device)
    validate_batch(model, cfg.trainer.batch_size)
    optimizer = build_optimizer(cfg.optim, model)
    loader = TensorLoader(data.train_x, data.train_y, cfg.trainer.batch_size, seed=cfg.seed)
    probe = Probe(model, cfg.trainer.probe_unit)
    train_subset = torch.randperm(len(data.train_x), generator=torch.Generator().manual_seed(cfg.seed))
    train_subset = train_subset[:cfg.trainer.train_eval_examples].to(device)
    params = count_params(model)
    print(f"{cfg.name}: {cfg.model.name} norm={cfg.model.norm} with {params:,} parameters on {device}, "
          f"run dir {run_dir}", file=sys.stderr)

    tracker = Tracker(cfg, run_dir)
    bar = progress_bar(cfg, cfg.trainer.max_steps, multirun)
    targets = {str(t): None for t in cfg.targets}
    best_acc, row, status, diverged_at = 0.0, {}, "completed", None
    loss_sum, last_eval_step, last_eval_time = torch.zeros((), device=device), 0, 0.0
    step = 0
    try:
        model.train()
        for step in range(1, cfg.trainer.max_steps + 1):
            x, y = next(loader)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
            if step % cfg.trainer.eval_every and step != cfg.trainer.max_steps:
                continue
            # --- evaluation: the only place the loop talks to the host ---
            train_loss = loss_sum.item() / (step - last_eval_step)
            loss_sum.zero_()
            with probe:
                test_acc, test_loss = evaluate(model, data.test_x, data.test_y)
            train_acc, _ = evaluate(model, data.train_x[train_subset], data.train_y[train_subset])
            elapsed = time.perf_counter() - start
            row = {"step": step, "examples": step * cfg.trainer.batch_size, "train_loss": train_loss,
                   "test_loss": test_loss, "test_acc": test_acc, "train_acc": train_acc,
                   "lr": optimizer.param_groups[0]["lr"], "wall_s": elapsed,
                   "examples_per_s": (step - last_eval_step) * cfg.trainer.batch_size / (elapsed - last_eval_time),
                   **probe.percentiles()}
            tracker.log(row)
            last_eval_step, last_eval_time = step, elapsed
            if not math.isfinite(train_loss):
                status, diverged_at = "diverged", step
                print(f"{cfg.name}: loss is {train_loss} at step {step}: diverged (a result, not an error)",
                      file=sys.stderr)
                break
            best_acc = max(best_acc, test_acc)
            for t in targets:
                if targets[t] is None and test_acc >= float(t):
                    targets[t] = step
            if bar is not None:
                bar.update(step - bar.n)
                bar.set_postfix(loss=f"{train_loss:.3f}", acc=f"{test_acc:.3f}")
            else:
                print(f"{cfg.name} step {step}/{cfg.trainer.max_steps} loss {train_loss:.4f} "
                      f"test_acc {test_acc:.4f}", file=sys.stderr, flush=True)
        final_eval = final_evals(model, cfg, data) if status == "completed" else {}
    finally:
        if bar is not None:
            bar.close()
    summary = {"status": status, "best_acc": best_acc, "final_acc": row.get("test_acc"),
               "final_train_acc": row.get("train_acc"), "steps_to": targets, "steps": step,
               "diverged_at": diverged_at, "final_eval": final_eval, "wall_s": time.perf_counter() - start,
               "params": params, "name": cfg.name, "claim": cfg.get("claim"), "scale": cfg.get("scale_name"),
               "git_rev": git_rev(), "torch_version": torch.__version__}
    tracker.finish(summary)
    return summary
