"""The one training loop, for every model, norm and scale: step, evaluate, record, checkpoint, resume, stop
on divergence or on a preemption signal.

Hot path rule: a training step launches work and never waits for it. The loss is accumulated on the device
and read back only at evaluation steps, which is also where divergence is detected. A preemption signal
only sets a flag, read as a Python bool (and, across DDP ranks, agreed on every SIGNAL_POLL steps).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import hashlib
import math
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

import bnrepro
from bnrepro import distributed as dist
from bnrepro.checkpoint import load_any, rng_state, save_checkpoint, set_rng_state
from bnrepro.data import load_data, per_rank
from bnrepro.models import build_model, count_params, to_channels_last
from bnrepro.norm import Norm, convert_sync_bn, validate_batch
from bnrepro.norm.weight import data_dependent_init, needs_data_init
from bnrepro.optim import build_optimizer, build_schedule
from bnrepro import probes as probe_registry
from bnrepro.probes import LoopProbe, StepView, watching
from bnrepro.progress import Progress, run_label
from bnrepro.resources import Resources, from_config, machine
from bnrepro.rundir import CHECKPOINTS, COMPLETED, DIVERGED, INTERRUPTED, write_status
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


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=Path(bnrepro.__file__).parent, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.decode(errors="replace") if out.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def code_version() -> dict:
    """The code a run is made from: `git_rev`, `git_dirty` (uncommitted changes to tracked files under
    bnrepro/, configs/ or hydra_plugins/ (the config folders Hydra searches), the ones that shape a run's numbers)
    and `code_hash` (of that diff, so two dirty runs say whether they ran the same changes). None where there is
    no git checkout. Once per process: the code a process runs is the code it imported."""
    rev = (_git("rev-parse", "--short", "HEAD") or "").strip()
    if not rev:
        return {"git_rev": "unknown", "git_dirty": None, "code_hash": None}
    top = (_git("rev-parse", "--show-toplevel") or "").strip()
    diff = _git("-C", top, "diff", "HEAD", "--", "bnrepro", "configs", "hydra_plugins") if top else None
    if diff is None:
        return {"git_rev": rev, "git_dirty": None, "code_hash": None}
    return {"git_rev": rev, "git_dirty": bool(diff),
            "code_hash": hashlib.sha256(diff.encode()).hexdigest()[:12] if diff else None}


def git_rev() -> str:
    return code_version()["git_rev"]


class Speed:
    """The GPU speed path (bf16 autocast, channels_last) as one object the step and evaluation share."""

    def __init__(self, cfg, device: torch.device, in_shape):
        t = cfg.trainer
        precision = t.precision
        self.bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
        layout = t.channels_last
        self.channels_last = len(in_shape) == 3 and (layout is True or (layout == "auto" and device.type == "cuda"))
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
    eval_at steps past max_steps are dropped (a shortened smoke run keeps its early ones). The values were
    checked at the door (bnrepro/schema.py: Trainer)."""
    max_steps, every, at = t.max_steps, t.eval_every, t.eval_at
    if at == "log":
        at = [m * 10 ** e for e in range(1, len(str(max_steps)) + 1) for m in (1, 2, 5)]
    steps = {s for s in at or () if s <= max_steps} | {max_steps}
    if every:
        steps |= set(range(every, max_steps + 1, every))
    return steps


def mean(values) -> float | None:
    return sum(values) / len(values) if values else None


def final_evals(model, cfg, data, speed, device, rank, world) -> tuple[dict[str, float], dict | None]:
    """Test accuracy under each inference variant of claim C8: the EMA statistics, precise BN with Wu &
    Johnson's population estimator or the paper's Algorithm 2, and test-time batch statistics; and, with
    `precise`, how far the EMA statistics are from the population ones (inference.ema_distance), else None."""
    test = lambda batch_size=EVAL_BATCH: data.eval_batches("test", batch_size, rank, world)
    out, distance = {}, None
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
            if variant == "precise":
                from bnrepro.inference import ema_distance

                distance = ema_distance(model, recalibrated)
        else:  # "batch": the schema allows only these four (FINAL_EVALS)
            from bnrepro.inference import batch_statistics

            with batch_statistics(model):  # test batches of the training batch size, as at training time
                out["batch"] = evaluate(model, test(per_rank(cfg.trainer.batch_size, world)), speed, device)[0]
    return out, distance


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


@dataclass
class RunState:
    """What a run has recorded so far; saved in each checkpoint (`to_dict`) and restored on resume.

    recent_test/recent_val: the last score_k accuracies (the honest score); best_val_*: the early-stopping
    view, chosen on validation only; diag_best_test_acc: a labelled diagnostic no rule may read. targets maps
    each target accuracy (as a string) to the first eval step reaching it. loss_sum and wall_s are the values
    at the checkpoint: the loop keeps the running loss sum on the device and the clock in a `Clock`. train_s and
    train_cpu_s: the wall and CPU seconds spent in training steps so far (`StepTime`; summary.json's, beside
    wall_s: what share of a run, and of a suite, is training; timings, never numbers a rule reads)."""

    step: int = 0
    targets: dict[str, int | None] = field(default_factory=dict)
    row: dict = field(default_factory=dict)  # the last metrics row
    recent_test: list[float] = field(default_factory=list)
    recent_val: list[float] = field(default_factory=list)
    best_val_acc: float | None = None
    best_val_step: int | None = None
    test_acc_at_best_val: float | None = None
    diag_best_test_acc: float | None = None
    last_eval_step: int = 0
    wall_s: float = 0.0
    last_eval_wall: float = 0.0
    loss_sum: float = 0.0
    wandb_id: str | None = None
    diverged_at: int | None = None
    train_s: float = 0.0
    train_cpu_s: float = 0.0

    @classmethod
    def fresh(cls, targets) -> RunState:
        return cls(targets={str(x): None for x in targets})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, saved: dict, targets) -> RunState:
        """A checkpoint's state over a fresh one: a key an older checkpoint lacks keeps its default (as the
        old dict's update did); a key this version does not know is dropped."""
        known = {f.name for f in dataclasses.fields(cls)}
        return dataclasses.replace(cls.fresh(targets), **{k: v for k, v in saved.items() if k in known})

    def record_eval(self, step: int, test_acc: float, val_acc: float | None, k: int) -> bool:
        """Fold one (finite) evaluation into the run's scores; True when it is the best so far on validation
        (the checkpoint to keep as best.pt). Steps-to-target read validation accuracy when there is a split,
        else test accuracy (summary.json's steps_to_split says which)."""
        self.recent_test = (self.recent_test + [test_acc])[-k:]
        self.diag_best_test_acc = max(self.diag_best_test_acc or 0.0, test_acc)
        watched = test_acc if val_acc is None else val_acc
        for target, reached in self.targets.items():
            if reached is None and watched >= float(target):
                self.targets[target] = step
        if val_acc is None:
            return False
        self.recent_val = (self.recent_val + [val_acc])[-k:]
        if self.best_val_acc is None or val_acc > self.best_val_acc:
            self.best_val_acc, self.best_val_step, self.test_acc_at_best_val = val_acc, step, test_acc
            return True
        return False


@dataclass
class Run:
    """Everything `build_run` makes from a config, and the plain numbers the hot path reads (an OmegaConf
    attribute read costs tens of microseconds, a visible share of a small net's step)."""

    cfg: Any
    run_dir: Path
    config_hash: str | None
    device: torch.device
    rank: int
    world: int
    threads: int
    data: Any
    model: torch.nn.Module  # the model itself: what is evaluated, probed and saved
    train_model: torch.nn.Module  # the same model as the step calls it (DDP and/or torch.compile around it)
    optimizer: torch.optim.Optimizer
    scheduler: Any
    loader: Any
    speed: Speed
    probes: list[LoopProbe]
    params: int
    evals: set[int]
    max_steps: int
    ckpt_every: int
    batch_size: int
    score_k: int
    smoothing: float
    has_val: bool

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def ckpt_dir(self) -> Path:
        return Path(self.run_dir) / CHECKPOINTS


def build_probes(cfg, model: torch.nn.Module) -> list[LoopProbe]:
    """The measurements `trainer.probes` names (bnrepro/probes/), in the order their keys appear in a row."""
    return probe_registry.build(cfg, model)


def step_view(run: Run, x: torch.Tensor, y: torch.Tensor, step: int, lr: float) -> StepView:
    """What a probe reads at its moments (bnrepro/probes/__init__.py)."""
    smoothing = run.smoothing
    return StepView(model=run.model, x=x, y=y, lr=lr, step=step,
                    loss=lambda logits, target: F.cross_entropy(logits, target, label_smoothing=smoothing),
                    speed=run.speed, data=run.data, device=run.device, cfg=run.cfg,
                    optimizer=run.optimizer)


def fixed_view(run: Run, step: int) -> StepView:
    """A StepView on a fixed training batch (a seeded subset, the loader untouched: the data order stays), for
    the probes' at_start and at_end."""
    x, y = next(iter(run.data.eval_batches("train", run.batch_size, run.rank, run.world, limit=run.batch_size,
                                           seed=run.cfg.seed)))
    x, y = x.to(run.device, non_blocking=True), y.to(run.device, non_blocking=True)
    return step_view(run, x, y, step, run.optimizer.param_groups[0]["lr"])


def build_run(cfg, run_dir: Path, config_hash: str | None, resources: Resources | None) -> Run:
    """Data, model, optimizer, schedule, loader, speed path and probes, seeded by cfg.seed; nothing read from a
    checkpoint yet. `cfg` is the checked config (bnrepro.door.checked)."""
    t = cfg.trainer
    evals = eval_steps(t)
    score_k = t.score_last_k
    device = pick_device(t.device)
    if dist.is_distributed() and device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    resources = resources or from_config(cfg)
    torch.set_num_threads(resources.threads)
    # benchmark mode picks conv algorithms by timing, run by run: off when the caller asked for determinism
    torch.backends.cudnn.benchmark = not torch.backends.cudnn.deterministic
    rank, world = dist.rank(), dist.world_size()
    torch.manual_seed(cfg.seed)
    data = load_data(cfg.data, device, resources.workers)
    model = build_model(cfg.model, data.in_shape, data.num_classes).to(device)
    norm = Norm.of(cfg.model)
    if needs_data_init(model, norm):
        # weight norm's data-dependent init (Salimans & Kingma sec. 3) on a seeded training batch drawn apart
        # from the loader, so the data order stays; a resumed run's checkpoint then overwrites it
        x, _ = next(iter(data.eval_batches("train", per_rank(t.batch_size, world), rank, world,
                                           limit=per_rank(t.batch_size, world), seed=cfg.seed)))
        data_dependent_init(model, x.to(device))
    if cfg.model.norm_sync:
        model = convert_sync_bn(model)
    validate_batch(model, per_rank(t.batch_size, world))
    speed = Speed(cfg, device, data.in_shape)
    if speed.channels_last:
        model = to_channels_last(model)
    optimizer = build_optimizer(cfg.optim, model, t.batch_size)
    scheduler = build_schedule(cfg.schedule, optimizer, t.max_steps)
    loader = data.train_batches(t.batch_size, cfg.seed, rank, world)
    probes = build_probes(cfg, model)
    params = count_params(model)
    train_model = model
    if world > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if t.compile:
        # a fresh Dynamo cache per run: the runs of a multirun process share the forward code, and a recompile
        # would be shape-generic (slower), past Dynamo's recompile limit even eager
        torch._dynamo.reset()
        train_model = torch.compile(train_model)
    return Run(cfg=cfg, run_dir=Path(run_dir), config_hash=config_hash, device=device, rank=rank, world=world,
               threads=resources.threads, data=data, model=model, train_model=train_model, optimizer=optimizer,
               scheduler=scheduler, loader=loader, speed=speed, probes=probes, params=params, evals=evals,
               max_steps=int(t.max_steps), ckpt_every=t.ckpt_every, batch_size=int(t.batch_size),
               score_k=score_k, smoothing=cfg.optim.label_smoothing,
               has_val=getattr(data, "has_val", False))


def restore(run: Run) -> tuple[RunState, bool]:
    """The run's state from its newest readable checkpoint (model, optimizer, schedule, loader position and
    every RNG put back too), or a fresh state; and whether it resumed."""
    ckpt = load_any(run.ckpt_dir, map_location=run.device)
    if ckpt is None:
        return RunState.fresh(run.cfg.targets), False
    if ckpt["world_size"] != run.world:
        raise bnrepro.ConfigError(f"{run.ckpt_dir / 'last.pt'} was written by {ckpt['world_size']} processes: "
                                  f"resume it with torchrun --nproc_per_node={ckpt['world_size']}")
    run.model.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.scheduler.load_state_dict(ckpt["scheduler"])
    run.loader.load_state_dict(ckpt["loader"][run.rank])
    set_rng_state(ckpt["rng"])
    return RunState.from_dict(ckpt["state"], run.cfg.targets), True


class StepTime:
    """The time of the training steps, added to state.train_s (wall) and train_cpu_s (this process's CPU time:
    a suite's share of training on a busy machine, where wall time also counts the waits for a core). Timed in
    chunks that `stop` where the loop already waits for the device (an evaluation's loss read; a checkpoint's,
    where device work still queued counts as the checkpoint's), so it adds no sync; what runs between a `stop`
    and the next `start` (evaluations, checkpoints, probes at start) is left out."""

    def __init__(self, state: RunState):
        self.state = state
        self.start()

    def start(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self) -> None:
        self.state.train_s += time.perf_counter() - self.wall
        self.state.train_cpu_s += time.process_time() - self.cpu


class Clock:
    """Wall time of the run across resumes: what the checkpoint recorded plus this process's time."""

    def __init__(self, before: float, start: float):
        self.before, self.start = before, start

    def __call__(self) -> float:
        return self.before + time.perf_counter() - self.start


def save(run: Run, state: RunState, loss_sum: torch.Tensor, elapsed: float, is_best: bool = False) -> None:
    """Write checkpoints/last.pt (and best.pt when is_best) on rank 0; every rank takes part in the gather."""
    # every rank's loader state is gathered: each rank holds its own position in its own shard
    loaders = [run.loader.state_dict()] if run.world == 1 else _gather(run.loader.state_dict(), run.world)
    if run.main:
        saved = dataclasses.replace(state, loss_sum=loss_sum.item(), wall_s=elapsed)
        save_checkpoint(run.ckpt_dir, {
            "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(), "loader": loaders, "rng": rng_state(),
            "state": saved.to_dict(), "config": OmegaConf.to_container(run.cfg, resolve=True),
            "config_hash": run.config_hash, "world_size": run.world}, is_best)


def train_step(run: Run, x: torch.Tensor, y: torch.Tensor, watch) -> tuple[torch.Tensor, float]:
    """One optimizer step; returns the loss (on the device, never read here) and the learning rate it used.
    `watch` is the probes' context on evaluation steps and a do-nothing one otherwise."""
    with run.speed.autocast(), watch:
        loss = F.cross_entropy(run.train_model(run.speed.input(x)), y, label_smoothing=run.smoothing)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    lr = run.optimizer.param_groups[0]["lr"]  # the rate this step used
    run.scheduler.step()
    return loss, lr


def evaluate_and_log(run: Run, state: RunState, step: int, lr: float, loss_sum: torch.Tensor, now,
                     tracker: Tracker, batch: tuple[torch.Tensor, torch.Tensor], steps: StepTime | None = None
                     ) -> dict:
    """The evaluation of one step: the mean training loss since the last one, test (with the probes), the
    fixed training subset and validation; the metrics row is logged and kept in state. The only place the
    loop talks to the host. `steps`: the clock of the steps since the last evaluation or checkpoint, stopped
    once the loss read has waited for them."""
    train_loss = (dist.all_reduce_sum(loss_sum.double()).item()
                  / (run.world * (step - state.last_eval_step)))
    if steps is not None:
        steps.stop()
    loss_sum.zero_()
    eval_batches, t = run.data.eval_batches, run.cfg.trainer
    with watching(run.probes, "test_eval"):
        test_acc, test_loss = evaluate(run.model, eval_batches("test", EVAL_BATCH, run.rank, run.world),
                                       run.speed, run.device)
    train_acc, _ = evaluate(run.model, eval_batches("train", EVAL_BATCH, run.rank, run.world,
                                                    limit=t.train_eval_examples, seed=run.cfg.seed),
                            run.speed, run.device)
    val = {}
    if run.has_val:
        val["val_acc"], val["val_loss"] = evaluate(
            run.model, eval_batches("val", EVAL_BATCH, run.rank, run.world), run.speed, run.device)
    wall = now()
    row = {"step": step, "examples": step * run.batch_size, "train_loss": train_loss, "test_loss": test_loss,
           "test_acc": test_acc, **val, "train_acc": train_acc, "lr": lr, "wall_s": wall,
           "examples_per_s": (step - state.last_eval_step) * run.batch_size / max(wall - state.last_eval_wall,
                                                                                  1e-9)}
    if run.probes:
        view = step_view(run, *batch, step, lr)
        for probe in run.probes:
            probe.measure(view)
            row.update(probe.values())
    tracker.log(row)
    state.row, state.last_eval_step, state.last_eval_wall = row, step, wall
    return row


def summarize(run: Run, state: RunState, status: str, final_eval: dict, wall_s: float) -> dict:
    """summary.json: the run's scores, its identity and where it ran."""
    cfg, row = run.cfg, state.row
    diverged = status == DIVERGED  # a diverged run scores 0.0: its last loss was NaN/inf
    # score_k: the evaluations the score averages (fewer than trainer.score_last_k when the run had fewer)
    return {"status": status, "score": 0.0 if diverged else mean(state.recent_test),
            "score_k": len(state.recent_test) or run.score_k,
            "val_score": (0.0 if diverged else mean(state.recent_val)) if run.has_val else None,
            "final_acc": row.get("test_acc"), "final_train_acc": row.get("train_acc"),
            "best_val_acc": state.best_val_acc, "best_val_step": state.best_val_step,
            "test_acc_at_best_val": state.test_acc_at_best_val, "steps_to": state.targets,
            "steps_to_split": "val" if run.has_val else "test", "diag_best_test_acc": state.diag_best_test_acc,
            "steps": state.step, "diverged_at": state.diverged_at, "final_eval": final_eval, "wall_s": wall_s,
            "train_s": state.train_s, "train_cpu_s": state.train_cpu_s,
            "params": run.params, "name": cfg.name, "claim": cfg.claim, "scale": cfg.scale_name,
            **code_version(), "torch_version": torch.__version__, "world_size": run.world,
            "config_hash": run.config_hash, "threads": run.threads, "machine": machine()}


def status_record(cfg, config_hash: str | None, status: str, **extra) -> dict:
    """summary.json of a run without scores: `started` (written first, so even a full disk later finds a file
    to record the failure in), `interrupted` (SIGTERM: resumable) or `failed` (with its one-line `error`)."""
    return {"status": status, **extra, "config_hash": config_hash, "name": cfg.name, "claim": cfg.claim,
            "scale": cfg.scale_name, **code_version()}


def fit(cfg, run_dir: Path, multirun: bool = False, config_hash: str | None = None,
        resources: Resources | None = None) -> dict:
    """Train cfg's model on cfg's data; write metrics.jsonl, summary.json and checkpoints into run_dir (rank 0);
    resume from run_dir/checkpoints/last.pt (or previous.pt when last.pt is unreadable); return the summary.
    `resources` (threads, workers) default to bnrepro.resources.from_config(cfg), resolved here once.

    build_run, restore, then train_steps (train_step; evaluate_and_log at evaluation steps), summarize."""
    start = time.perf_counter()
    run = build_run(cfg, run_dir, config_hash, resources)
    state, resumed = restore(run)
    tracker = Tracker(cfg, run_dir, enabled=run.main, wandb_id=state.wandb_id, resume_step=state.step)
    now = Clock(state.wall_s, start + tracker.wandb_s)  # a W&B server's stall is not the run's time
    state.wandb_id = tracker.wandb_id
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if run.main else (lambda msg: None)
    label = run_label(cfg, run_dir, multirun)
    say(f"{label}: {cfg.model.name} norm={cfg.model.norm} with {run.params:,} parameters on {run.device}"
        f"{f' x {run.world} processes' if run.world > 1 else ''}, {run.threads} torch threads, run dir {run_dir}"
        + (f", resumed at step {state.step}" if resumed else ""))
    progress = Progress.for_run(cfg, label, state.step, multirun, enabled=run.main)
    try:
        with StopSignal() as stop:
            status, interrupted = train_steps(run, state, now, tracker, progress, stop, say, label)
            if interrupted:
                tracker.close()
                out = {"status": INTERRUPTED, "steps": state.step, "signal": signal.Signals(interrupted).name}
                if run.main:  # a status the report lists, written before submitit's handler may exit
                    write_status(run_dir, status_record(cfg, config_hash, **out))
                progress.finish({**out, "wall_s": now()}, run_dir)
                stop.forward()  # submitit's handler requeues the job (and exits)
                return out
        final_eval, distance = (final_evals(run.model, cfg, run.data, run.speed, run.device, run.rank, run.world)
                                if status == COMPLETED else ({}, None))
    finally:
        progress.close()
    end_probes = {}
    if status == COMPLETED and run.probes:  # measurements on the trained net
        view = fixed_view(run, state.step)
        end_probes = {k: v for probe in run.probes for k, v in probe.at_end(view).items()}
    summary = summarize(run, state, status, final_eval, now())
    if distance is not None:  # C8's precondition: EMA vs population statistics of the final weights
        summary["ema_distance"] = distance
    if end_probes:
        summary["end_probes"] = end_probes
    tracker.finish(summary)
    progress.finish(summary, run_dir)
    return summary


def train_steps(run: Run, state: RunState, now: Clock, tracker: Tracker, progress: Progress, stop: StopSignal,
                say, label: str) -> tuple[str, int | None]:
    """Steps from state.step + 1 to max_steps, evaluating at run.evals and checkpointing every ckpt_every
    steps, on a new best and at the end. Returns the status ("completed" or "diverged") and the signal that
    stopped it (None when none did; a checkpoint is then written before returning). The steps' own time goes
    to state.train_s and train_cpu_s (StepTime)."""
    loss_sum = torch.tensor(state.loss_sum, device=run.device)  # summed on the device: no per-step sync
    evals, max_steps, ckpt_every, world, probes = run.evals, run.max_steps, run.ckpt_every, run.world, run.probes
    run.model.train()
    if state.step == 0 and probes:  # measurements at initialization, a fresh run only
        view = fixed_view(run, 0)
        at_init = {k: v for probe in probes for k, v in probe.at_start(view).items()}
        if at_init:
            tracker.log({"step": 0, **at_init})
    steps = StepTime(state)
    for step in range(state.step + 1, max_steps + 1):
        caught = stop.signum is not None
        if caught if world == 1 else step % SIGNAL_POLL == 0 and dist.any_rank(caught, run.device):
            steps.stop()
            save(run, state, loss_sum, now())
            return COMPLETED, stop.signum or signal.SIGTERM  # on a rank that only heard of it: SIGTERM
        x, y = next(run.loader)
        at_eval = step in evals
        loss, lr = train_step(run, x, y, watching(probes, "train_step") if at_eval else NO_CONTEXT)
        loss_sum += loss.detach().float()
        state.step = step
        progress.advance()  # counts; the bar redraws at most twice a second
        if not at_eval:
            if step % ckpt_every == 0:
                steps.stop()
                save(run, state, loss_sum, now())
                steps.start()
            continue
        row = evaluate_and_log(run, state, step, lr, loss_sum, now, tracker, (x, y), steps)
        train_loss, test_acc = row["train_loss"], row["test_acc"]
        if not math.isfinite(train_loss):
            state.diverged_at = step
            say(f"{label}: loss is {train_loss} at step {step}: diverged (a result, not an error)")
            return DIVERGED, None
        is_best = state.record_eval(step, test_acc, row.get("val_acc"), run.score_k)
        if is_best or step % ckpt_every == 0 or step == max_steps:
            save(run, state, loss_sum, now(), is_best)
        steps.start()
        progress.evaluated(step, train_loss, test_acc)
    return COMPLETED, None


def _gather(obj, world: int) -> list:
    out = [None] * world
    torch.distributed.all_gather_object(out, obj)
    return out
