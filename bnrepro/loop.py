"""The one training loop, for every model, norm and scale: step, evaluate, record, checkpoint, resume, stop
on divergence or on a preemption signal.

Hot path rule: a training step launches work and never waits for it. The loss is accumulated on the device
and read back only at evaluation steps, which is also where divergence is detected. A preemption signal
only sets a flag, read as a Python bool (and, across DDP ranks, agreed on every SIGNAL_POLL steps).
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

import bnrepro
from bnrepro import distributed as dist
from bnrepro.checkpoint import load_any, rng_state, save_checkpoint, set_rng_state
from bnrepro.data import load_data, per_rank
from bnrepro.models import build_model, count_params
from bnrepro.norm import convert_sync_bn, validate_batch
from bnrepro.optim import build_optimizer, build_schedule
from bnrepro.probes import Probe
from bnrepro.progress import Progress, run_label
from bnrepro.resources import Resources, from_config, machine
from bnrepro.tracking import Tracker

# Set here, not in train.py: a sweep launched as `python -m bnrepro.train` pickles its task by value into
# joblib's workers, which then import this module but never train.py.
# The cores this process may use (Slurm's or taskset's grant, not the machine's count), for launcher configs:
OmegaConf.register_new_resolver("bnrepro_cores", lambda: len(os.sched_getaffinity(0)), replace=True)
# configs/hydra/launcher/{joblib,submitit_local}.yaml extend the plugins' configs of the same name on purpose
warnings.filterwarnings("ignore", message=r"(?s).*is validated against ConfigStore schema with the same name")

EVAL_BATCH = 1000
SIGNAL_POLL = 25  # steps between the ranks' agreement on a caught signal (one small all-reduce)
NO_CONTEXT = contextlib.nullcontext()  # reusable: entering it does nothing


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


# Models that `trainer.channels_last=auto` keeps in NCHW on CUDA: on an H200 (results/bench/gpu.md) BN-Inception's
# separable stem got a weight gradient 76% off between NCHW and channels_last, while the ResNets agreed; until a GPU
# run of tests/test_cuda.py (both layouts against a float64 CPU reference) says which is wrong, take no chance.
NCHW_ON_CUDA = ("inception_bn", "inception")


class Speed:
    """The GPU speed path (bf16 autocast, channels_last) as one object the step and evaluation share."""

    def __init__(self, cfg, device: torch.device, in_shape):
        t = cfg.trainer
        precision = t.get("precision", "auto")
        self.bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
        layout = t.get("channels_last", "auto")
        auto = device.type == "cuda" and cfg.model.name not in NCHW_ON_CUDA
        self.channels_last = len(in_shape) == 3 and (layout is True or (layout == "auto" and auto))
        self.device_type = device.type

    def autocast(self):
        # a disabled torch.autocast still costs ~20 us to enter and leave at every step
        return torch.autocast(self.device_type, dtype=torch.bfloat16) if self.bf16 else NO_CONTEXT

    def input(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


@torch.inference_mode()
def evaluate(model, batches, speed: Speed, device) -> tuple[float, float]:
    """(accuracy, mean loss) over every rank's share of a split, in eval mode, with one host sync.

    Sums of loss, hits and examples are all-reduced, so the result is exact over the whole split."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    for x, y in batches:
        with speed.autocast():
            logits = model(speed.input(x)).float()
        sums[0] += F.cross_entropy(logits, y, reduction="sum")
        sums[1] += (logits.argmax(1) == y).sum()
        sums[2] += len(y)
    model.train(was_training)
    loss, hits, n = dist.all_reduce_sum(sums).tolist()
    return hits / max(n, 1), loss / max(n, 1)


def eval_steps(t) -> set[int]:
    """The steps that evaluate, as a Python set the loop tests membership in (no per-step work): every
    `eval_every` steps (0: none), the steps of `eval_at` (a list, or "log": 10, 20, 50, 100, 200, 500, ...,
    dense where the curves move, so early accuracy and steps-to-target are measured), and the last step.
    eval_at steps past max_steps are dropped (a shortened smoke run keeps its early ones)."""
    max_steps, every, at = int(t.max_steps), int(t.eval_every), t.get("eval_at")
    if every < 0:
        raise bnrepro.ConfigError(f"trainer.eval_every={every}: set a number of steps >= 0 (0: only eval_at)")
    if at == "log":
        at = [m * 10 ** e for e in range(1, len(str(max_steps)) + 1) for m in (1, 2, 5)]
    elif at is None:
        at = []
    elif isinstance(at, str) or not all(isinstance(s, int) and s > 0 for s in at):
        raise bnrepro.ConfigError(f"trainer.eval_at={at}: set a list of positive step numbers, log or null")
    steps = {s for s in at if s <= max_steps} | {max_steps}
    if every:
        steps |= set(range(every, max_steps + 1, every))
    return steps


def mean(values) -> float | None:
    return sum(values) / len(values) if values else None


FINAL_EVALS = ("ema", "precise", "precise_alg2", "batch")


def final_evals(model, cfg, data, speed, device, rank, world) -> dict[str, float]:
    """Test accuracy under each inference variant of claim C8: the EMA statistics, precise BN with Wu &
    Johnson's population estimator or the paper's Algorithm 2, and test-time batch statistics."""
    test = lambda batch_size=EVAL_BATCH: data.eval_batches("test", batch_size, rank, world)
    out = {}
    for variant in cfg.trainer.final_eval:
        if variant == "ema":
            out["ema"] = evaluate(model, test(), speed, device)[0]
        elif variant in ("precise", "precise_alg2"):
            from bnrepro.inference import precise_bn

            recalibrated = copy.deepcopy(model)
            batches = ((speed.input(x), y) for x, y in
                       data.train_batches(cfg.trainer.batch_size, cfg.seed + 1, rank, world))
            with speed.autocast():
                precise_bn(recalibrated, batches, cfg.trainer.precise_bn_examples // world,
                           estimator="population" if variant == "precise" else "alg2")
            out[variant] = evaluate(recalibrated, test(), speed, device)[0]
        elif variant == "batch":
            from bnrepro.inference import batch_statistics

            with batch_statistics(model):  # test batches of the training batch size, as at training time
                out["batch"] = evaluate(model, test(per_rank(cfg.trainer.batch_size, world)), speed, device)[0]
        else:
            raise bnrepro.ConfigError(f"unknown trainer.final_eval entry '{variant}': use "
                                      f"{', '.join(FINAL_EVALS)}")
    return out


class StopSignal:
    """SIGTERM (Slurm preemption), SIGUSR1 and SIGUSR2 (submitit's requeue signal) set a flag; the loop saves a
    checkpoint at the next step and stops. `forward()` then hands the signal to the handler that was there
    before (submitit's, which requeues the job)."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)

    def __init__(self):
        self.signum, self.previous = None, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._catch) for s in self.SIGNALS}
        return self

    def _catch(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def forward(self):
        handler = self.previous.get(self.signum)
        if callable(handler):
            handler(self.signum, None)


def fit(cfg, run_dir: Path, multirun: bool = False, config_hash: str | None = None,
        resources: Resources | None = None) -> dict:
    """Train cfg's model on cfg's data; write metrics.jsonl, summary.json and checkpoints into run_dir (rank 0);
    resume from run_dir/checkpoints/last.pt (or previous.pt when last.pt is unreadable); return the summary.
    `resources` (threads, workers) default to bnrepro.resources.from_config(cfg), resolved here once."""
    start = time.perf_counter()
    t = cfg.trainer
    evals = eval_steps(t)  # validated before anything is built or written
    device = pick_device(t.device)
    if dist.is_distributed() and device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    resources = resources or from_config(cfg)
    threads = resources.threads
    torch.set_num_threads(threads)
    # benchmark mode picks conv algorithms by timing, run by run: off when the caller asked for determinism
    torch.backends.cudnn.benchmark = not torch.backends.cudnn.deterministic
    rank, world, main = dist.rank(), dist.world_size(), dist.is_main()
    torch.manual_seed(cfg.seed)
    data = load_data(cfg.data, device, resources.workers)
    model = build_model(cfg.model, data.in_shape, data.num_classes).to(device)
    if cfg.model.get("norm_sync", False):
        model = convert_sync_bn(model)
    validate_batch(model, per_rank(t.batch_size, world))
    speed = Speed(cfg, device, data.in_shape)
    if speed.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg.optim, model, t.batch_size)
    scheduler = build_schedule(cfg.schedule, optimizer, t.max_steps)
    loader = data.train_batches(t.batch_size, cfg.seed, rank, world)
    probe = Probe(model, t.probe_unit)
    # the same unit seen in training mode, on the training batch of each eval step: where noisy BN's noise and
    # batch statistics act (C9). Not under torch.compile, where attaching a hook would force a recompile.
    train_probe = None if t.get("compile", False) else Probe(model, t.probe_unit, prefix="probe_train_p")
    params = count_params(model)
    train_model = model
    if world > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if t.get("compile", False):
        train_model = torch.compile(train_model)
    smoothing = cfg.optim.get("label_smoothing", 0.0)

    # --- resume ---
    ckpt_dir = Path(run_dir) / "checkpoints"
    # recent_test/recent_val: the last score_k accuracies (the honest score); best_val_*: the early-stopping
    # view, chosen on validation only; diag_best_test_acc: a labelled diagnostic no rule may read
    score_k = int(t.get("score_last_k", 3))
    if score_k < 1:
        raise bnrepro.ConfigError(f"trainer.score_last_k={score_k}: set how many final evaluations the score "
                                  "averages, >= 1")
    state = {"step": 0, "targets": {str(x): None for x in cfg.targets}, "row": {}, "recent_test": [],
             "recent_val": [], "best_val_acc": None, "best_val_step": None, "test_acc_at_best_val": None,
             "diag_best_test_acc": None, "last_eval_step": 0, "wall_s": 0.0, "last_eval_wall": 0.0,
             "loss_sum": 0.0, "wandb_id": None}
    has_val = getattr(data, "has_val", False)
    ckpt = load_any(ckpt_dir, map_location=device)
    if ckpt is not None:
        if ckpt["world_size"] != world:
            raise bnrepro.ConfigError(f"{ckpt_dir / 'last.pt'} was written by {ckpt['world_size']} processes: "
                                      f"resume it with torchrun --nproc_per_node={ckpt['world_size']}")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        loader.load_state_dict(ckpt["loader"][rank])
        set_rng_state(ckpt["rng"])
        state.update(ckpt["state"])
    wall_before = state["wall_s"]
    elapsed = lambda: wall_before + time.perf_counter() - start
    tracker = Tracker(cfg, run_dir, enabled=main, wandb_id=state["wandb_id"], resume_step=state["step"])
    state["wandb_id"] = tracker.wandb_id
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if main else (lambda msg: None)
    label = run_label(cfg, run_dir, multirun)
    say(f"{label}: {cfg.model.name} norm={cfg.model.norm} with {params:,} parameters on {device}"
          f"{f' x {world} processes' if world > 1 else ''}, {threads} torch threads, run dir {run_dir}"
          + (f", resumed at step {state['step']}" if ckpt else ""))

    def checkpoint(is_best: bool = False):
        # every rank's loader state is gathered: each rank holds its own position in its own shard
        loaders = [loader.state_dict()] if world == 1 else _gather(loader.state_dict(), world)
        if main:
            save_checkpoint(ckpt_dir, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "loader": loaders, "rng": rng_state(),
                "state": {**state, "loss_sum": loss_sum.item(), "wall_s": elapsed()},
                "config": OmegaConf.to_container(cfg, resolve=True), "config_hash": config_hash,
                "world_size": world}, is_best)

    progress = Progress.for_run(cfg, label, state["step"], multirun, enabled=main)
    loss_sum = torch.tensor(state["loss_sum"], device=device)
    status, interrupted = "completed", None
    # plain ints: an OmegaConf attribute read costs tens of microseconds, a visible share of a small net's step
    max_steps, ckpt_every = int(t.max_steps), int(t.get("ckpt_every", 1000))
    try:
        with StopSignal() as stop:
            model.train()
            for step in range(state["step"] + 1, max_steps + 1):
                caught = stop.signum is not None
                if caught if world == 1 else step % SIGNAL_POLL == 0 and dist.any_rank(caught, device):
                    interrupted = stop.signum or signal.SIGTERM  # on a rank that only heard of it: SIGTERM
                    break
                x, y = next(loader)
                at_eval = step in evals
                with speed.autocast(), (train_probe if at_eval and train_probe else NO_CONTEXT):
                    loss = F.cross_entropy(train_model(speed.input(x)), y, label_smoothing=smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                lr = optimizer.param_groups[0]["lr"]  # the rate this step used
                scheduler.step()
                loss_sum += loss.detach().float()
                state["step"] = step
                progress.advance()  # counts; the bar redraws at most twice a second
                if not at_eval:
                    if step % ckpt_every == 0:
                        checkpoint()
                    continue
                # --- evaluation: the only place the loop talks to the host ---
                train_loss = dist.all_reduce_sum(loss_sum.double()).item() / (world * (step - state["last_eval_step"]))
                loss_sum.zero_()
                with probe:
                    test_acc, test_loss = evaluate(model, data.eval_batches("test", EVAL_BATCH, rank, world), speed,
                                                   device)
                train_acc, _ = evaluate(model, data.eval_batches("train", EVAL_BATCH, rank, world,
                                                                 limit=t.train_eval_examples, seed=cfg.seed),
                                        speed, device)
                val = {}
                if has_val:
                    val["val_acc"], val["val_loss"] = evaluate(
                        model, data.eval_batches("val", EVAL_BATCH, rank, world), speed, device)
                now = elapsed()
                row = {"step": step, "examples": step * t.batch_size, "train_loss": train_loss,
                       "test_loss": test_loss, "test_acc": test_acc, **val, "train_acc": train_acc, "lr": lr,
                       "wall_s": now, "examples_per_s": (step - state["last_eval_step"]) * t.batch_size
                       / max(now - state["last_eval_wall"], 1e-9), **probe.percentiles(),
                       **(train_probe.percentiles() if train_probe else {})}
                tracker.log(row)
                state.update(row=row, last_eval_step=step, last_eval_wall=now)
                if not math.isfinite(train_loss):
                    status, state["diverged_at"] = "diverged", step
                    say(f"{label}: loss is {train_loss} at step {step}: diverged (a result, not an error)")
                    break
                is_best = record_eval(state, step, test_acc, val.get("val_acc"), score_k)
                if is_best or step % ckpt_every == 0 or step == max_steps:
                    checkpoint(is_best)
                progress.evaluated(step, train_loss, test_acc)
            if interrupted:
                checkpoint()
                tracker.close()
                say(f"{label}: {signal.Signals(interrupted).name} after step {state['step']}: checkpoint saved "
                    f"in {ckpt_dir}; rerun the same command to resume")
                progress.finish({"status": "interrupted", "wall_s": elapsed()}, run_dir)
                stop.forward()  # submitit's handler requeues the job (and exits)
                return {"status": "interrupted", "steps": state["step"]}
        final_eval = final_evals(model, cfg, data, speed, device, rank, world) if status == "completed" else {}
    finally:
        progress.close()
    row = state["row"]
    diverged = status == "diverged"  # a diverged run scores 0.0: its last loss was NaN/inf
    summary = {"status": status, "score": 0.0 if diverged else mean(state["recent_test"]), "score_k": score_k,
               "val_score": (0.0 if diverged else mean(state["recent_val"])) if has_val else None,
               "final_acc": row.get("test_acc"), "final_train_acc": row.get("train_acc"),
               "best_val_acc": state["best_val_acc"], "best_val_step": state["best_val_step"],
               "test_acc_at_best_val": state["test_acc_at_best_val"], "steps_to": state["targets"],
               "steps_to_split": "val" if has_val else "test", "diag_best_test_acc": state["diag_best_test_acc"],
               "steps": state["step"],
               "diverged_at": state.get("diverged_at"), "final_eval": final_eval, "wall_s": elapsed(),
               "params": params, "name": cfg.name, "claim": cfg.get("claim"), "scale": cfg.get("scale_name"),
               "git_rev": git_rev(), "torch_version": torch.__version__, "world_size": world,
               "config_hash": config_hash, "threads": threads, "machine": machine()}
    tracker.finish(summary)
    progress.finish(summary, run_dir)
    return summary


def record_eval(state: dict, step: int, test_acc: float, val_acc: float | None, k: int) -> bool:
    """Fold one (finite) evaluation into the run's scores; True when it is the best so far on validation
    (the checkpoint to keep as best.pt). Steps-to-target read validation accuracy when there is a split,
    else test accuracy (summary.json's steps_to_split says which)."""
    state["recent_test"] = (state["recent_test"] + [test_acc])[-k:]
    state["diag_best_test_acc"] = max(state["diag_best_test_acc"] or 0.0, test_acc)
    watched = test_acc if val_acc is None else val_acc
    for target, reached in state["targets"].items():
        if reached is None and watched >= float(target):
            state["targets"][target] = step
    if val_acc is None:
        return False
    state["recent_val"] = (state["recent_val"] + [val_acc])[-k:]
    if state["best_val_acc"] is None or val_acc > state["best_val_acc"]:
        state.update(best_val_acc=val_acc, best_val_step=step, test_acc_at_best_val=test_acc)
        return True
    return False


def _gather(obj, world: int) -> list:
    out = [None] * world
    torch.distributed.all_gather_object(out, obj)
    return out
