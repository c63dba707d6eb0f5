"""`make gpu-check`: the CUDA paths tested and the GPU measured, in one bounded run (default budget 330 s).

On a CUDA machine, each part runs in its own subprocess with its own time cap, so a failing or slow part
never stops the others, and results/bench/gpu.md is rewritten after every part with what was measured:
  tests       pytest -m cuda tests/test_cuda.py (bf16, channels_last, SyncBN, compile, GPU loader, resume)
  throughput  training images/s on synthetic data: CIFAR ResNet-20 (batch 128), ImageNet-shaped ResNet-50 and
              BN-Inception (224 px): eager fp32 vs channels_last+bf16 vs compiled; the trainer (bnrepro.loop)
              against a bare PyTorch loop on ResNet-20, side by side in one process (ratio)
  suite       every SCALE=cifar experiment as `python -m bnrepro.train -m` (the reproduce.sh command), seed 0,
              a few steps per run, on synthetic CIFAR-10 pickles and MNIST IDX files written here; timed end to end
  parallel    k = 1, 2, 4, 8 ResNet-20 training processes at once on the one GPU: total images/s
  count       the configured run count of the full SCALE=cifar suite (every sweep composed with Hydra), and
              from it and the measured rates the estimated GPU-hours of `make reproduce SCALE=cifar`
Without CUDA it says so in one line, runs `count` and a tiny CPU throughput sample, and exits 0.
Usage: python scripts/gpu_check.py [--budget 330] [--out results/bench/gpu.md] [--keep DIR] [--experiments ...]
       python scripts/gpu_check.py --render DIR [DIR ...] --out results/bench/gpu.md
--keep DIR keeps each part's raw rows, the test log and results.json (on a lent machine: a folder under the one
that comes back, so even a run cut short returns what it measured); --render writes the page from kept runs,
each part from the last run that ran it (parts re-run on their own after a fix), with DIR/notes.md appended.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import pickle
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_OUT = ROOT / "results" / "bench" / "gpu.md"
# part (c) runs every experiment of the suite (bnrepro.arms.EXPERIMENTS), these first: C1 (BN-Inception, the most
# GPU-hours) and each model family, so a cut at the budget leaves the rest to the ResNet-20 fallback rate
FIRST = ("c1_speed", "fig1", "c2_lr", "c7_small_batch")


def experiments() -> list[str]:
    from bnrepro.arms import EXPERIMENTS

    return [*FIRST, *(e for e in EXPERIMENTS if e not in FIRST)]
# each part's share of --budget (scaled to it; a part's unused seconds go to the later parts). parallel needs
# ~46 s on an H200 whatever the budget, so a bigger budget goes mostly to the compiles and the suite
CAPS = {"tests": 105, "throughput": 105, "suite": 95, "parallel": 35}
ANCHORS = [
    ("airbench94 (Jordan 2024): CIFAR-10 to 94% test accuracy", "about 3.3 s of training on one A100 "
     "(GPU-resident data, no DataLoader, compiled, fp32 BN), i.e. about 10 epochs at ~150,000 img/s",
     "resnet20"),
    ("NVIDIA DeepLearningExamples ResNet-50 v1.5, AMP, one A100 80GB", "about 2,500 img/s training (batch 256)",
     "resnet50"),
]
SUITE_STEPS = 40
# what bnrepro imports beyond torch: a GPU image with its own torch often lacks these (carry their wheels)
NEEDED = ("hydra", "omegaconf", "antlr4", "yaml", "pydantic", "pydantic_core", "annotated_types",
          "typing_inspection", "numpy", "scipy")
OURS = {"seed", "trainer.max_steps", "trainer.eval_every", "logger", "trainer.progress", "experiment", "scale"}  # steps per run in part (c); evaluated at 20 and 40
SYNTH = {"train_per_file": 2000, "test": 1000}  # part (c)'s synthetic CIFAR-10: 10,000 train, 1,000 test


# ---------------------------------------------------------------------------------------------- helpers
def now() -> float:
    return time.perf_counter()


def emit(rows_file: str | None, **row) -> None:
    """One measured figure, appended and flushed at once (a part killed at its cap keeps what it measured)."""
    line = json.dumps(row)
    print(line if row.get("kind") != "count" else f"count: {row['experiment']}: {len(row['jobs'])} runs", flush=True)
    if rows_file:
        with open(rows_file, "a") as f:
            f.write(line + "\n")


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line torn by the kill at the cap
    return out


def write_cifar(root: Path, per_file: int, n_test: int, seed: int = 0) -> None:
    """CIFAR-10 in torchvision's python-pickle layout (random images): the shape and format of the real data."""
    import numpy as np

    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name, size in [(f"data_batch_{i}", per_file) for i in range(1, 6)] + [("test_batch", n_test)]:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (size, 3072), dtype=np.uint8),
                         "labels": rng.integers(0, 10, size).tolist(), "batch_label": name}, f)


def write_mnist(root: Path, n_train: int, n_test: int, seed: int = 0) -> None:
    """MNIST in torchvision's layout (<root>/MNIST/raw, uncompressed IDX files), random images."""
    import numpy as np

    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)

    def idx(path, a):
        path.write_bytes(bytes([0, 0, 8, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
                         + a.astype(np.uint8).tobytes())

    for prefix, n in (("train", n_train), ("t10k", n_test)):
        idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n))


# ------------------------------------------------------------------------------------ run count (count)
def expand_sweep(params: dict) -> list[list[str]]:
    """hydra.sweeper.params -> the list of each job's overrides, as Hydra's basic sweeper expands them."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    axes = []
    for key, value in (params or {}).items():
        o = parser.parse_overrides([f"{key}={value}"])[0]
        values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
        axes.append([f"{key}={v}" for v in values])
    return [list(job) for job in itertools.product(*axes)]


def suite_jobs(scale: str, experiments: list[str]) -> dict[str, list[dict]]:
    """Every job of every experiment's sweep at `scale`, each with what the estimate needs (composed)."""
    from hydra import compose, initialize_config_dir

    out = {}
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        for exp in experiments:
            base = [f"experiment={exp}", f"scale={scale}"]
            hcfg = compose("train", overrides=base, return_hydra_config=True)
            jobs = []
            for overrides in expand_sweep(hcfg.hydra.sweeper.params):
                cfg = compose("train", overrides=base + overrides)
                t = cfg.trainer
                jobs.append({"overrides": overrides, "seed": int(cfg.seed), "model": str(cfg.model.name),
                             "max_steps": int(t.max_steps), "batch_size": int(t.batch_size),
                             "eval_every": int(t.eval_every),
                             # per evaluation: the test split (10,000 images in CIFAR-10/100 and MNIST) + the
                             # fixed training subset
                             "eval_examples": int(t.train_eval_examples) + 10000})
            out[exp] = jobs
    return out


def part_count(args) -> None:
    jobs = suite_jobs("cifar", args.experiments)
    for exp, js in jobs.items():
        emit(args.rows, kind="count", experiment=exp, jobs=js)


# ------------------------------------------------------------------------------ throughput (throughput)
def synthetic_rate(model, batch: int, shape, classes: int, device, *, bf16: bool, channels_last: bool,
                   compiled: bool, steps: int, warmup: int) -> float:
    """Training images/s of a bare loop (forward, cross-entropy, backward, SGD step) on one resident batch."""
    import torch
    import torch.nn.functional as F

    from bnrepro.models import to_channels_last

    model = model.to(device)
    if channels_last:
        model = to_channels_last(model)  # as the trainer does it
    if compiled:  # a fresh cache per model: another net through the same forward code (nn.Sequential's) would
        torch._dynamo.reset()  # count as a recompile, and Dynamo's automatic dynamic shapes would compile this one
    fwd = torch.compile(model, dynamic=False) if compiled else model  # for any input size (slow, seen on an H200)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, foreach=True)
    x = torch.randn(batch, *shape, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch,), device=device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(fwd(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        start_ev, end_ev = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start_ev.record()
    t0 = now()
    for _ in range(steps):
        step()
    if cuda:
        end_ev.record()
        torch.cuda.synchronize()
        seconds = start_ev.elapsed_time(end_ev) / 1e3
    else:
        seconds = now() - t0
    return steps * batch / seconds


def throughput_cases(cuda: bool):
    """(name, model config, batch, input shape, classes, variant) in the order they are measured: every eager
    figure first, the trainer/bare ratio next, the compiled ones (minutes of compilation) last."""
    r20 = {"name": "resnet_cifar", "depth": 20}
    if not cuda:  # the CPU sample: tiny, seconds
        return [("resnet20", r20, 8, (3, 32, 32), 10, v) for v in ("fp32", "cl-bf16")]
    r50, inc = {"name": "resnet", "arch": "resnet50"}, {"name": "inception_bn"}
    im = (3, 224, 224)
    cases = []
    for variant in ("fp32", "cl-bf16"):
        cases += [("resnet20", r20, 128, (3, 32, 32), 10, variant), ("resnet50", r50, 128, im, 1000, variant),
                  ("bn-inception", inc, 128, im, 1000, variant)]
    cases.append(("resnet20", r20, 128, (3, 32, 32), 10, "trainer-vs-bare"))
    cases += [("resnet20", r20, 128, (3, 32, 32), 10, "compiled"), ("resnet50", r50, 128, im, 1000, "compiled"),
              ("bn-inception", inc, 128, im, 1000, "compiled")]
    return cases


def model_defaults(spec: dict) -> dict:
    from bnrepro.models import model_config

    return {**model_config(spec["name"]), **spec}


def trainer_vs_bare(rows, cuda: bool, rounds: int = 2) -> None:
    """bnrepro.loop.fit against a bare loop (scripts/bench_trainer.py's), same model, batch and speed path."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import bench_trainer as bt

    steps = 150 if cuda else 4
    overrides = ["model=resnet_cifar", "model.depth=20", "data=cifar10", "data.augment=false",
                 f"trainer.batch_size={128 if cuda else 16}", "trainer.train_eval_examples=32", "trainer.threads=auto"]
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DATA_DIR"] = tmp
        bt.write_cifar(Path(tmp))
        for r in range(rounds):
            t, cfg = bt.trainer_step_s(overrides, steps, Path(tmp) / f"trainer-{r}")
            b = bt.bare_step_s(cfg, steps)
            batch = int(cfg.trainer.batch_size)
            emit(rows, kind="ratio", model="resnet20", batch=batch, round=r, trainer_img_s=batch / t,
                 bare_img_s=batch / b, ratio=t / b)


def part_throughput(args) -> None:
    import torch

    from bnrepro.models import build_model

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    torch.backends.cudnn.benchmark = True
    for name, spec, batch, shape, classes, variant in throughput_cases(cuda):
        t0 = now()
        try:
            if variant == "trainer-vs-bare":
                trainer_vs_bare(args.rows, cuda, rounds=2 if cuda else 1)
                continue
            torch.manual_seed(0)
            model = build_model(model_defaults(spec), shape, classes)
            steps, warmup = (30, 8) if cuda else (2, 1)
            if variant == "compiled":
                warmup = 3  # the first calls compile
            rate = synthetic_rate(model, batch, shape, classes, device, bf16=variant != "fp32",
                                  channels_last=variant != "fp32", compiled=variant == "compiled", steps=steps,
                                  warmup=warmup)
            emit(args.rows, kind="throughput", model=name, batch=batch, shape=list(shape), variant=variant,
                 img_s=rate, steps=steps, seconds=now() - t0)
        except Exception as e:  # one case failing must not stop the others
            emit(args.rows, kind="error", part="throughput", case=f"{name} {variant}",
                 error=f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}")
        finally:
            if cuda:
                torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------- the suite (suite)
def last_error(stderr: str) -> str:
    """The line that says what went wrong: the trainer's last `error:` line, else the last line."""
    lines = [x.strip() for x in stderr.strip().splitlines() if x.strip()]
    return next((x for x in reversed(lines) if x.startswith("error:")), lines[-1] if lines else "")[:300]


def suite_run_row(summary_path: Path) -> dict:
    """One run of part (c): its overrides, status and steady step time; a failed run keeps its one-line error
    and no rate of its own (the estimate gives it its experiment's median steady rate)."""
    from bnrepro import rundir

    s = json.loads(summary_path.read_text())
    overrides = rundir.read_overrides(summary_path.parent)
    row = {"overrides": [o for o in overrides if o.split("=")[0] not in OURS], "status": s["status"],
           "steps": s.get("steps", 0), "steady": False, "wall_s": s.get("wall_s"), "step_s": None}
    if s["status"] not in rundir.FINISHED:
        return {**row, "error": s.get("error", "")[:300]}
    rows = rundir.read_metrics(summary_path.parent)
    # steady step time: the second evaluation interval (after cudnn's autotuning and the first calls)
    row["steady"] = len(rows) >= 2 and all(r["train_loss"] is not None and math.isfinite(r["train_loss"])
                                           for r in rows[-2:])
    if row["steady"]:
        row["step_s"] = (rows[-1]["wall_s"] - rows[-2]["wall_s"]) / max(rows[-1]["step"] - rows[-2]["step"], 1)
    else:  # diverged at its first evaluation (the % warm-up of 40 steps is none): start-up included
        row["step_s"] = s["wall_s"] / max(s["steps"], 1)
    return row


def part_suite(args) -> None:
    """Each experiment's sweep, as scripts/reproduce.sh runs it (basic launcher: one run after another on the
    GPU), at seed 0 and SUITE_STEPS steps; wall time per experiment, and each run's steady step time."""
    deadline = now() + args.cap - 3
    data = Path(tempfile.mkdtemp(prefix="gpucheck-data-"))
    runs = Path(tempfile.mkdtemp(prefix="gpucheck-runs-"))
    write_cifar(data, SYNTH["train_per_file"], SYNTH["test"])
    write_mnist(data, 10000, SYNTH["test"])
    env = {**os.environ, "DATA_DIR": str(data), "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    steps = args.suite_steps
    for exp in args.experiments:
        left = deadline - now()
        if left < 8:
            emit(args.rows, kind="suite", experiment=exp, status="not run (budget)")
            continue
        cmd = [sys.executable, "-m", "bnrepro.train", "-m", f"experiment={exp}", "scale=cifar", "hydra/launcher=basic",
               f"hydra.sweep.dir={runs / exp}", "seed=0", f"trainer.max_steps={steps}",
               f"trainer.eval_every={steps // 2}", "logger=none", "trainer.progress=none", *args.suite_overrides]
        t0 = now()
        try:
            done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=left)
            status = "completed" if done.returncode == 0 else f"exit {done.returncode}: {last_error(done.stderr)}"
        except subprocess.TimeoutExpired:
            status = "cut at the budget"
        wall = now() - t0
        run_rows = [suite_run_row(path) for path in sorted((runs / exp).glob("**/summary.json"))]
        emit(args.rows, kind="suite", experiment=exp, status=status, wall_s=wall, runs=run_rows, steps=steps)


# ---------------------------------------------------------------------------------- k parallel (parallel)
def part_pworker(args) -> None:
    """One of k ResNet-20 trainers sharing the GPU: warm up, wait for the others, time `steps` steps."""
    import torch
    import torch.nn.functional as F

    from bnrepro.models import build_model, to_channels_last

    torch.backends.cudnn.benchmark = True
    device = torch.device("cuda")
    model = build_model(model_defaults({"name": "resnet_cifar", "depth": 20}), (3, 32, 32), 10).to(device)
    model = to_channels_last(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, foreach=True)
    x = torch.randn(128, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (128,), device=device)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(15):
        step()
    torch.cuda.synchronize()
    barrier = Path(args.barrier)
    (barrier / f"ready-{os.getpid()}").touch()
    while len(list(barrier.glob("ready-*"))) < args.k:
        time.sleep(0.005)
    t0 = time.time()
    for _ in range(args.steps):
        step()
    torch.cuda.synchronize()
    emit(args.rows, kind="pworker", k=args.k, start=t0, end=time.time(), steps=args.steps, batch=128)


def part_parallel(args) -> None:
    deadline = now() + args.cap - 2
    steps = 200
    for k in (1, 2, 4, 8):
        if deadline - now() < 5:
            emit(args.rows, kind="parallel", k=k, status="not run (budget)")
            continue
        barrier = Path(tempfile.mkdtemp(prefix=f"gpucheck-k{k}-"))
        wrows = barrier / "rows.jsonl"
        errs = [open(barrier / f"err-{i}.log", "w") for i in range(k)]
        procs = [subprocess.Popen([sys.executable, __file__, "--part", "pworker", "--k", str(k), "--steps", str(steps),
                                   "--barrier", str(barrier), "--rows", str(wrows)], cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=err) for err in errs]  # in our group: a kill of this
        # part at its cap (killpg) ends them too
        CHILDREN.update(procs)
        try:
            for p in procs:
                p.wait(timeout=max(1, deadline - now()))
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
                p.wait()
        CHILDREN.difference_update(procs)
        for e in errs:
            e.close()
        got = [r for r in read_rows(wrows) if r.get("kind") == "pworker"]
        if len(got) == k:
            span = max(r["end"] for r in got) - min(r["start"] for r in got)
            total = sum(r["steps"] * r["batch"] for r in got) / span
            emit(args.rows, kind="parallel", k=k, img_s=total, per_run_img_s=total / k, seconds=span, steps=steps)
            if k == 1:  # size the later rounds to about 1.5 s each of a lone run's work
                steps = max(50, min(2000, int(1.5 * total / 128)))
        else:
            why = next((t.strip().splitlines()[-1] for t in (e.read_text() for e in barrier.glob("err-*.log"))
                        if t.strip()), "")
            emit(args.rows, kind="parallel", k=k, status=f"{len(got)} of {k} finished in the budget"
                 + (f": {why[:200]}" if why else ""))


# ------------------------------------------------------------------------------------- the estimate
def estimate(count_rows: list[dict], suite_rows: list[dict], throughput_rows: list[dict],
             parallel_rows: list[dict]) -> dict:
    """GPU-hours of the full SCALE=cifar suite: per job, its experiment's measured seed-0 run of the same
    overrides gives the steady step time and the fixed cost per run (start, data, final evaluations); the
    full run is then fixed + max_steps x step + evaluations (each evaluated image costing a third of a
    trained one: forward only). Jobs with no measured run fall back to the trainer's ResNet-20 rate."""
    measured, overhead = {}, {}
    for s in suite_rows:
        for r in s.get("runs", []):
            measured[(s["experiment"], frozenset(r["overrides"]))] = r
        if s.get("status") == "completed":  # process start, Hydra, imports: once per experiment
            overhead[s["experiment"]] = max(s["wall_s"] - sum(r["wall_s"] or 0.0 for r in s["runs"]), 0.0)
    fallback_img_s = None
    ratios = [r for r in throughput_rows if r.get("kind") == "ratio"]
    if ratios:
        fallback_img_s = max(r["trainer_img_s"] for r in ratios)
    # a run that diverged (or failed) in the short test has no steady interval: its experiment's median steady run
    steady = {}
    for (exp, _), r in measured.items():
        if r.get("steady", True) and r["status"] in ("completed", "diverged"):
            steady.setdefault(exp, []).append(r)
    median = lambda rs: sorted(rs, key=lambda r: r["step_s"])[len(rs) // 2]
    total_s, runs, fallbacks, missing = 0.0, 0, 0, 0
    per_exp, missing_by = {}, {}
    for c in count_rows:
        exp_s = overhead.get(c["experiment"], 0.0)
        for job in c["jobs"]:
            runs += 1
            m = measured.get((c["experiment"], frozenset(o for o in job["overrides"] if o.split("=")[0] not in OURS)))
            if m is not None and not m.get("steady", True):
                m = median(steady[c["experiment"]]) if c["experiment"] in steady else None
            if m is not None and m["status"] in ("completed", "diverged"):
                # the full run is counted to max_steps (an upper bound where a full run would diverge early)
                step_s = m["step_s"]
                fixed = max(m["wall_s"] - m["steps"] * step_s, 0.0)
            elif fallback_img_s:
                step_s, fixed, fallbacks = job["batch_size"] / fallback_img_s, 0.0, fallbacks + 1
            else:
                missing += 1
                missing_by[c["experiment"]] = missing_by.get(c["experiment"], 0) + 1
                continue
            evals = math.ceil(job["max_steps"] / job["eval_every"])
            eval_s = evals * job["eval_examples"] * step_s / job["batch_size"] / 3
            exp_s += fixed + job["max_steps"] * step_s + eval_s
        per_exp[c["experiment"]] = exp_s
        total_s += exp_s
    best = max((p for p in parallel_rows if "img_s" in p), key=lambda p: p["img_s"], default=None)
    single = next((p for p in parallel_rows if p.get("k") == 1 and "img_s" in p), None)
    gain = best["img_s"] / single["img_s"] if best and single else 1.0
    return {"runs": runs, "gpu_hours": total_s / 3600, "per_experiment_h": {k: v / 3600 for k, v in per_exp.items()},
            "missing_by_experiment": missing_by,
            "fallbacks": fallbacks, "missing": missing, "best_k": best["k"] if best else 1, "parallel_gain": gain,
            "gpu_hours_parallel": total_s / 3600 / gain}


def estimate_of(results: dict) -> dict | None:
    """The estimate from a page's parts (None without the run count)."""
    if not results.get("count"):
        return None
    return estimate(results["count"], [s for s in results.get("suite", []) if s.get("kind") == "suite"],
                    results.get("throughput", []), results.get("parallel", []))


# ------------------------------------------------------------------------------------- the report
def test_outcomes(log: str, errors: int = 30) -> str:
    """pytest's verbose log cut to what a reader needs: each test's outcome, the first `errors` E-lines and the
    summary (a timeout's thread dump runs to thousands of lines); the log's end where it has no outcome at all."""
    outcome = re.compile(r"::\S+ (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)|^(FAILED|ERROR|SKIPPED) |^=+ .*\d+ "
                         r"(passed|failed|errors?|skipped)")
    lines = log.splitlines()
    keep = [x for x in lines if outcome.search(x)]
    keep += [x for x in lines if x.startswith("E ")][:errors]
    if not keep:
        return log.strip()[-2500:]
    order = {x: i for i, x in enumerate(lines)}
    return "\n".join(sorted(set(keep), key=order.get))


def render(info: dict, results: dict) -> str:
    """results/bench/gpu.md from what was measured so far (parts not yet run or cut show as such)."""
    L = ["# GPU check (`make gpu-check`)", "",
         f"Device: **{info.get('device', '?')}**; torch {info.get('torch', '?')}, CUDA {info.get('cuda', '?')}, "
         f"cuDNN {info.get('cudnn', '?')}; Python {info.get('python', '?')}; {info.get('cpus', '?')} CPU cores; "
         f"written {info.get('date', '?')} by `python scripts/gpu_check.py`"
         + (f" (budget {info['budget']:.0f} s)." if info.get("budget") else "."), ""]
    runs = info.get("runs", [])
    if len(runs) > 1:
        L += [f"Parts from {len(runs)} runs (`--render`, each part from the last run that ran it): "
              + "; ".join(f"run {i} written {r.get('date', '?')} ({r.get('how') or 'budget %s s' % r.get('budget')})"
                          for i, r in enumerate(runs, 1)) + ".", ""]
    if info.get("cl_avg_pool"):
        L += [f"torch's channels_last backward of a padded average pool on this device: {info['cl_avg_pool']}.", ""]
    status = results.get("status", {})
    merged = len(runs) > 1
    L += ["## Parts", "", "| part | status | seconds |" + " run |" * merged, "|---|---|---|" + "---|" * merged]
    for part in ("tests", "throughput", "suite", "parallel", "count"):
        st = status.get(part, {"status": "pending"})
        L.append(f"| {part} | {st['status']} | {st.get('seconds', 0):.0f} |" + f" {st.get('run', '-')} |" * merged)
    L.append("")

    tests = results.get("tests")
    L += ["## (a) Tests marked `cuda` (tests/test_cuda.py)", ""]
    if tests:
        L += ["```", test_outcomes(tests), "```", ""]
    else:
        L += ["not run", ""]

    rows = results.get("throughput", [])
    L += ["## (b) Training throughput, synthetic data (images/s, higher is better)", "",
          "Bare loop (forward, cross-entropy, backward, SGD momentum step) on one resident batch; CUDA events "
          "around the timed steps only; cudnn.benchmark on. fp32 = eager NCHW fp32 (cuDNN's default TF32 "
          "convolutions); cl-bf16 = channels_last + bf16 autocast; compiled = cl-bf16 + torch.compile.", "",
          "| model | batch | input | fp32 | cl-bf16 | compiled | cl-bf16 / fp32 | compiled / cl-bf16 |",
          "|---|---|---|---|---|---|---|---|"]
    by = {}
    for r in rows:
        if r.get("kind") == "throughput":
            by.setdefault((r["model"], r["batch"], "x".join(map(str, r["shape"]))), {})[r["variant"]] = r["img_s"]
    fmt = lambda v: f"{v:,.0f}" if v else "-"
    ratio = lambda a, b: f"{a / b:.2f}x" if a and b else "-"
    for (model, batch, shape), v in by.items():
        L.append(f"| {model} | {batch} | {shape} | {fmt(v.get('fp32'))} | {fmt(v.get('cl-bf16'))} | "
                 f"{fmt(v.get('compiled'))} | {ratio(v.get('cl-bf16'), v.get('fp32'))} | "
                 f"{ratio(v.get('compiled'), v.get('cl-bf16'))} |")
    ratios = [r for r in rows if r.get("kind") == "ratio"]
    if ratios:
        L += ["", "Trainer (`bnrepro.loop.fit`, its speed path: bf16 + channels_last on CUDA, GPU-resident "
              "data, one evaluation per interval) against a bare loop on the same model, data and batch, "
              "alternating in one process (scripts/bench_trainer.py's method):", "",
              "| model | batch | round | trainer img/s | bare img/s | trainer time / bare time |", "|---|---|---|---|---|---|"]
        for r in ratios:
            L.append(f"| {r['model']} | {r['batch']} | {r['round']} | {r['trainer_img_s']:,.0f} | "
                     f"{r['bare_img_s']:,.0f} | **{r['ratio']:.2f}x** |")
    errors = [r for r in rows if r.get("kind") == "error"]
    for e in errors:
        L.append(f"- failed: {e['case']}: `{e['error']}`")
    L += ["", "Anchors (published figures on other hardware, beside ours on **" + info.get("device", "?") + "**):", "",
          "| reference | their figure | ours (same model, this device) |", "|---|---|---|"]
    for ref, figure, model in ANCHORS:
        ours = next((max(v.get("compiled") or 0, v.get("cl-bf16") or 0) for (m, _, _), v in by.items()
                     if m == model), None)
        L.append(f"| {ref} | {figure} | {fmt(ours)} img/s ({model}, best of cl-bf16/compiled) |")
    L.append("")

    suite = results.get("suite", [])
    L += [f"## (c) The SCALE=cifar suite, seed 0, {SUITE_STEPS} steps per run, end to end", "",
          "Each experiment as `python -m bnrepro.train -m experiment=E scale=cifar hydra/launcher=basic seed=0 "
          f"trainer.max_steps={SUITE_STEPS} trainer.eval_every={SUITE_STEPS // 2} logger=none` on synthetic "
          f"CIFAR-10 pickles ({5 * SYNTH['train_per_file']:,} train / {SYNTH['test']:,} test) and MNIST IDX files; "
          "wall time includes the process start, Hydra, data loading, every run's evaluations, final evaluations "
          "and checkpoints. Step = the steady time per step over the second evaluation interval.", "",
          "| experiment | runs | status | wall s | median ms/step | slowest ms/step |", "|---|---|---|---|---|---|"]
    for s in suite:
        rs = s.get("runs", [])
        steps_ms = sorted(r["step_s"] * 1e3 for r in rs if r.get("step_s") is not None)
        med = f"{steps_ms[len(steps_ms) // 2]:.1f}" if steps_ms else "-"
        slow = f"{steps_ms[-1]:.1f}" if steps_ms else "-"
        L.append(f"| {s['experiment']} | {len(rs)} | {' '.join(s['status'].split())[:160]} | {s.get('wall_s', 0):.1f} | {med} | {slow} |")
    failed = [(s["experiment"], r) for s in suite for r in s.get("runs", []) if r.get("error") is not None]
    if failed:
        L += ["", "Failed runs:", ""] + [f"- {exp} `{' '.join(r['overrides'])}`: {r['status']}: `{r['error']}`"
                                         for exp, r in failed]
    if suite:
        L += ["", f"Total wall time of part (c): {sum(s.get('wall_s', 0) for s in suite):.1f} s for "
              f"{sum(len(s.get('runs', [])) for s in suite)} runs.", ""]
    else:
        L += ["not run", ""]

    par = results.get("parallel", [])
    L += ["## (d) k ResNet-20 runs (batch 128, cl-bf16) in parallel processes on one GPU", "",
          "| k | total img/s | per run img/s | total vs k=1 |", "|---|---|---|---|"]
    one = next((p["img_s"] for p in par if p.get("k") == 1 and "img_s" in p), None)
    for p in par:
        if "img_s" in p:
            L.append(f"| {p['k']} | {p['img_s']:,.0f} | {p['per_run_img_s']:,.0f} | {ratio(p['img_s'], one)} |")
        else:
            L.append(f"| {p['k']} | {p.get('status')} | - | - |")
    L.append("")

    est = results.get("estimate")
    L += ["## Estimated GPU-hours of `make reproduce SCALE=cifar`", ""]
    if est:
        L += [f"**{est['gpu_hours']:.1f} GPU-hours** for {est['runs']} runs (every sweep composed with Hydra, all "
              f"seeds) one run at a time; **{est['gpu_hours_parallel']:.1f} h** with k={est['best_k']} runs per GPU "
              f"(total throughput x{est['parallel_gain']:.2f} in (d)). Per job: the measured seed-0 run of the same "
              "overrides gives the steady step time and the fixed cost per run; full run = fixed + max_steps x step "
              "+ evaluations (an evaluated image costs a third of a trained one). "
              f"{est['fallbacks']} jobs used the trainer's ResNet-20 rate (no measured run), {est['missing']} had "
              "no rate at all" + (" and are left out: **a lower bound**." if est["missing"] else "."), "",
              "| experiment | GPU-hours |", "|---|---|"]
        no_rate = est.get("missing_by_experiment", {})
        L += [f"| {k} | {v:.2f}" + (f" + {no_rate[k]} runs with no rate" if no_rate.get(k) else "") + " |"
              for k, v in est["per_experiment_h"].items()]
    elif results.get("count"):
        n = sum(len(c["jobs"]) for c in results["count"])
        L += [f"{n} runs configured (every sweep composed); no measured rates, so no estimate."]
    else:
        L += ["not computed"]
    if info.get("notes"):
        L += ["", info["notes"].strip()]
    return "\n".join(L) + "\n"


def merge_kept(folders: list[Path]) -> tuple[dict, dict]:
    """(info, results) of the runs kept in `folders` (--keep), oldest first: each part from the last run that ran
    it; the estimate recomputed from the merged parts; the last folder's notes.md, if any, as the page's end."""
    info, results, runs = {}, {"status": {}}, []
    for folder in folders:
        kept = json.loads((folder / "results.json").read_text())
        info = dict(kept["info"])
        runs.append(kept["info"])
        for part, st in kept["results"].get("status", {}).items():
            if st["status"].startswith(("not run", "pending")):
                continue
            results["status"][part] = {**st, "run": len(runs)}
            if part in kept["results"]:
                results[part] = kept["results"][part]
    info["runs"] = runs
    notes = folders[-1] / "notes.md"
    info["notes"] = notes.read_text() if notes.exists() else None
    results["estimate"] = estimate_of(results)
    return info, results


def missing_modules() -> list[str]:
    """NEEDED modules this Python cannot import, then anything else bnrepro's trainer fails to import."""
    import importlib
    import importlib.util

    missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    if not missing:
        try:
            importlib.import_module("bnrepro.train")
        except ModuleNotFoundError as e:
            missing.append(e.name or str(e))
    return missing


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------- orchestration
CHILDREN: set[subprocess.Popen] = set()  # the running parts, each in its own session: ended with us


def on_term(signum, frame):
    """`timeout` or a cancel (SIGTERM/SIGINT) ends the parts too: they run in sessions of their own, which a signal
    to our process group would not reach, and on a lent machine they would run on after the command."""
    for p in list(CHILDREN):
        try:
            os.killpg(p.pid, signal.SIGKILL) if os.getpgid(p.pid) == p.pid else p.kill()
        except (ProcessLookupError, PermissionError):
            pass
    raise SystemExit(128 + signum)


def install_signal_handlers() -> None:
    """Only where parts run: --render and the dependency check leave a caller's handlers (a test's) alone."""
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)


def kill(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)  # the part's whole process group (pytest, compile workers)
    except (ProcessLookupError, PermissionError):
        pass
    p.wait()


def capped(cmd: list[str], cap: float, log=None) -> dict:
    """Run cmd in its own process group with a wall-clock cap (killed with its children at the cap); what it
    wrote before stays. Returns {"status", "seconds"}."""
    t0 = now()
    p = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=log, stderr=subprocess.STDOUT if log else None)
    CHILDREN.add(p)
    try:
        rc = p.wait(timeout=cap)
        status = "ok" if rc == 0 else f"failed (exit {rc})"
    except subprocess.TimeoutExpired:
        kill(p)
        status = f"cut at its {cap:.0f} s cap (what it measured before is kept)"
    CHILDREN.discard(p)
    return {"status": status, "seconds": now() - t0}


def run_part(name: str, cap: float, rows: Path, extra: list[str] = ()) -> dict:
    """One part of this script (--part name), capped; its figures go to `rows`."""
    return capped([sys.executable, __file__, "--part", name, "--rows", str(rows), "--cap", str(int(cap)), *extra], cap)


def device_info(budget) -> dict:
    import torch

    cuda = torch.cuda.is_available()
    return {"device": torch.cuda.get_device_name(0) if cuda else f"CPU ({platform.processor() or platform.machine()})",
            "torch": torch.__version__, "cuda": torch.version.cuda or "none",
            "cudnn": torch.backends.cudnn.version() if cuda else "n/a", "python": platform.python_version(),
            "cpus": len(os.sched_getaffinity(0)), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "budget": budget, "cl_avg_pool": cl_avg_pool_verdict() if cuda else None}


def cl_avg_pool_verdict() -> str:
    """Whether this torch's CUDA channels_last backward of a padded average pool is right (pytorch/pytorch#188344),
    which decides whether BN-Inception's pool branches run in NCHW (bnrepro/models/inception.py)."""
    try:
        from bnrepro.models.inception import channels_last_avg_pool_is_right

        right = channels_last_avg_pool_is_right("cuda")
    except Exception as e:  # noqa: BLE001 - a line of the report, never the end of the check
        return f"not checked ({type(e).__name__}: {e})"
    return ("**right** (BN-Inception's padded average pools use it)" if right else
            "**wrong**, as in pytorch/pytorch#188344 (BN-Inception's padded average pools run in NCHW)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=330, help="seconds for the whole check (CUDA machine)")
    p.add_argument("--out", type=Path, default=None, help=f"markdown report (default on CUDA: {DEFAULT_OUT})")
    p.add_argument("--experiments", nargs="+", default=experiments())
    p.add_argument("--suite-steps", type=int, default=SUITE_STEPS)
    p.add_argument("--keep", type=Path, help="keep each part's rows, the test log and results.json in this folder")
    p.add_argument("--render", type=Path, nargs="+", help="write --out from these kept runs' folders; runs nothing")
    p.add_argument("--part", choices=["count", "throughput", "suite", "parallel", "pworker"],
                   help="run one part in this process (with --rows FILE): `--part suite --suite-overrides "
                        "trainer.precision=bf16` runs part (c) under bf16 on a CPU, where dtype bugs show up too")
    p.add_argument("--rows", help="the part's rows (JSON lines)")
    p.add_argument("--cap", type=float, default=60, help="the part's seconds")
    p.add_argument("--suite-overrides", nargs="*", default=[], help="more overrides for every run of part (c)")
    p.add_argument("--k", type=int, help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    p.add_argument("--barrier", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.part:
        install_signal_handlers()
        {"count": part_count, "throughput": part_throughput, "suite": part_suite, "parallel": part_parallel,
         "pworker": part_pworker}[args.part](args)
        return 0

    if args.render:
        info, results = merge_kept(args.render)
        write_atomic(args.out or DEFAULT_OUT, render(info, results))
        print(f"gpu-check: {args.out or DEFAULT_OUT} written from {len(args.render)} kept run(s)")
        return 0
    missing = missing_modules()
    if missing:  # minutes of a lent GPU lost otherwise: every part would fail on the first import
        print(f"gpu-check: this Python lacks {', '.join(missing)}, which bnrepro imports: install them, or on a "
              "machine without a package index carry their wheels (README, 'The GPU check'); nothing was run",
              file=sys.stderr)
        return 2
    install_signal_handlers()
    start = now()
    # every child (parts, pytest, `python -m bnrepro.train`) imports bnrepro from this checkout
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    os.environ.setdefault("WANDB_MODE", "disabled")
    import torch

    cuda = torch.cuda.is_available()
    info = device_info(args.budget)
    out = args.out or (DEFAULT_OUT if cuda else None)
    work = args.keep or Path(tempfile.mkdtemp(prefix="gpucheck-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {"status": {}}

    def save():
        write_atomic(work / "results.json", json.dumps({"info": info, "results": results}, indent=1))
        if out:
            write_atomic(out, render(info, results))

    if not cuda:
        print(f"gpu-check: no CUDA device (torch {torch.__version__}): the GPU parts are skipped; running the "
              "run count of SCALE=cifar and a tiny CPU throughput sample", flush=True)
        for part, fn in (("count", part_count), ("throughput", part_throughput)):  # in this process: seconds
            t0, args.rows = now(), str(work / f"{part}.jsonl")
            try:
                fn(args)
                results["status"][part] = {"status": "ok", "seconds": now() - t0}
            except Exception as e:  # noqa: BLE001  the other part still runs
                results["status"][part] = {"status": f"failed: {type(e).__name__}: {e}"[:200], "seconds": now() - t0}
            rows = read_rows(work / f"{part}.jsonl")
            results[part] = [x for x in rows if x.get("kind") == "count"] if part == "count" else rows
        results["estimate"] = None  # no GPU rates to estimate from
    else:
        print(f"gpu-check: {info['device']}, torch {info['torch']}, CUDA {info['cuda']}; budget {args.budget:.0f} s; "
              f"writing {out}", flush=True)
        save()
        # the run count composes configs on the CPU while the GPU parts run (no timing depends on it)
        count_rows = work / "count.jsonl"
        counter = subprocess.Popen([sys.executable, __file__, "--part", "count", "--rows", str(count_rows),
                                    "--experiments", *args.experiments], cwd=ROOT, start_new_session=True,
                                   stdout=subprocess.DEVNULL)
        CHILDREN.add(counter)
        deadline = start + args.budget
        parts = ["tests", "throughput", "suite", "parallel"]
        scale = args.budget / sum(CAPS.values())
        for i, part in enumerate(parts):
            # its own share plus whatever the earlier parts left unused; the later parts keep their shares
            cap = deadline - now() - scale * sum(CAPS[q] for q in parts[i + 1:])
            if cap < 10:
                results["status"][part] = {"status": "not run (budget)", "seconds": 0}
                save()
                continue
            print(f"gpu-check: part {part}, cap {cap:.0f} s", flush=True)
            rows = work / f"{part}.jsonl"
            if part == "tests":
                timeout = ["--timeout", "75"] if _has("pytest_timeout") else []
                with open(work / "tests.log", "w") as log:
                    results["status"]["tests"] = capped(
                        [sys.executable, "-m", "pytest", "tests/test_cuda.py", "-m", "cuda", "-v", "-rfEs",
                         "-p", "no:cacheprovider", *timeout], cap, log)
                results["tests"] = (work / "tests.log").read_text()
                print(results["tests"][-3000:], flush=True)
            else:
                results["status"][part] = run_part(part, cap, rows, ["--experiments", *args.experiments,
                                                                     "--suite-steps", str(args.suite_steps)])
                results[part] = read_rows(rows)
            if part == "suite":  # the part's process ended well, but its experiments may not have
                bad = [s["experiment"] for s in results[part] if s.get("status") not in ("completed", None)]
                if bad:
                    results["status"][part]["status"] += f" ({len(bad)} of {len(results[part])} experiments not " \
                                                         "completed)"
            save()
        try:
            counter.wait(timeout=max(1, deadline - now() + 15))
            results["status"]["count"] = {"status": "ok" if counter.returncode == 0 else "failed", "seconds": 0}
        except subprocess.TimeoutExpired:
            kill(counter)
            results["status"]["count"] = {"status": "cut", "seconds": 0}
        results["count"] = [x for x in read_rows(count_rows) if x.get("kind") == "count"]
        results["estimate"] = estimate_of(results)
    save()
    est = results.get("estimate")
    n = sum(len(c["jobs"]) for c in results.get("count", []))
    if est and cuda:
        print(f"gpu-check: estimated GPU-hours of the full SCALE=cifar suite ({est['runs']} runs): "
              f"{est['gpu_hours']:.1f} h one run at a time, {est['gpu_hours_parallel']:.1f} h at k={est['best_k']} "
              f"runs per GPU ({info['device']})" + (f"; a lower bound: {est['missing']} runs had no measured rate"
                                                    if est["missing"] else ""), flush=True)
    else:
        print(f"gpu-check: SCALE=cifar configures {n} runs ({', '.join(args.experiments)}); GPU-hours need a "
              "CUDA device", flush=True)
        for r in results.get("throughput", []):
            if r.get("kind") == "throughput":
                print(f"gpu-check: CPU sample {r['model']} batch {r['batch']} {r['variant']}: {r['img_s']:.1f} img/s")
    if not out:
        print(render(info, results) if os.environ.get("GPU_CHECK_PRINT") else "gpu-check: report not written "
              "(no CUDA; pass --out FILE to write one)")
    print(f"gpu-check: done in {now() - start:.0f} s" + (f"; report {out}" if out else ""), flush=True)
    return 0


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    sys.exit(main())
