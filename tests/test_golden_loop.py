"""Golden runs: the trainer's numbers for a few tiny configs, recorded before bnrepro/loop.py was split into
named parts (issue 10), must stay exactly the same (floats equal, not approximately). They cover the paths a
refactor can break: evaluation on a log grid with a validation split and every final_eval variant, the
training-mode probe under ghost and noisy BN (noisy BN draws from the global RNG at each step), a conv net,
a diverging run, and a run stopped by SIGTERM and resumed.

The numbers are recorded and compared with portable numerics (bnrepro/numerics.py, switched on for every test
by conftest.py): torch's CPU code paths pinned to ones every x86-64 CPU has, so the goldens of one machine are
the numbers of another (an AMD EPYC with AVX-512 and an Intel Xeon with AVX2 gave different last bits before),
while the comparison stays bit for bit: a changed summation order still fails it (tested below).

Regenerate (only when a change of numbers is intended, and say why in the commit):
    BNREPRO_GOLDEN_WRITE=1 .venv/bin/python -m pytest tests/test_golden_loop.py -q
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bnrepro import loop
from bnrepro.loop import RunState
from bnrepro.probes import LoopProbe, preserved
from bnrepro.tracking import Tracker
from bnrepro.train import train
from conftest import compose_cfg

GOLDEN = Path(__file__).parent / "data" / "golden_loop"
WRITE = os.environ.get("BNREPRO_GOLDEN_WRITE") == "1"
# what depends on the machine, the clock or the commit rather than on the run's numbers
ROW_TIMING = {"wall_s", "examples_per_s"}
SUMMARY_MACHINE = {"wall_s", "train_s", "train_cpu_s", "git_rev", "git_dirty", "code_hash", "machine", "threads", "torch_version"}
# the hash of the resolved config: stored, but not compared, so that a new config option (C11-C15's) does not
# fail these runs whose numbers it leaves alone
IDENTITY = "config_hash"

COMMON = ("logger=none", "trainer.threads=1", "trainer.progress=none")
RUNS = {
    # MLP on digits, log-spaced evals, validation split, every inference variant of C8
    "mlp_log_val_final": ("trainer.max_steps=60", "trainer.eval_every=0", "trainer.eval_at=log",
                          "data.val_split=0.1", "trainer.final_eval=[ema,precise,precise_alg2,batch]",
                          "targets=[0.3,0.5,0.999]"),
    # ghost BN and noisy BN: the training-mode probe sees their batch statistics and noise
    "mlp_ghost_bn": ("trainer.max_steps=40", "trainer.eval_every=20", "model.norm=ghost_bn",
                     "model.ghost_batch=15"),
    "mlp_noisy_bn": ("trainer.max_steps=40", "trainer.eval_every=20", "model.norm=noisy_bn",
                     "model.dropout=0.1"),
    # a conv net (channel probe) on the same data
    "resnet8": ("model=resnet_cifar", "model.depth=8", "model.width=4", "trainer.max_steps=30",
                "trainer.eval_every=10", "trainer.final_eval=[ema,batch]"),
    # divergence: no BN, a huge learning rate; a status and a diverged_at, not an error
    "diverged": ("model.norm=none", "model.act=relu", "model.init_std=1.0", "optim.lr=1000",
                 "trainer.max_steps=200", "trainer.eval_every=10"),
}
# stopped by SIGTERM right after the row of step 40, then resumed to the end
RESUMED = ("resumed", ("trainer.max_steps=80", "trainer.eval_every=20", "trainer.ckpt_every=30",
                       "model.dropout=0.1", "trainer.final_eval=[ema,batch]"), 40)


def _rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ROW_TIMING} for r in rows]


def _summary(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in SUMMARY_MACHINE}


def _check(name: str, run_dir: Path, summary: dict) -> None:
    got = {"rows": _rows(run_dir), "summary": _summary(summary)}
    got = json.loads(json.dumps(got))  # what a JSON round trip makes of it (tuples, int keys), as stored
    path = GOLDEN / f"{name}.json"
    if WRITE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        return
    want = json.loads(path.read_text())
    assert got["rows"] == want["rows"]
    assert got["summary"].pop(IDENTITY) and want["summary"].pop(IDENTITY)
    assert got["summary"] == want["summary"]


@pytest.mark.parametrize("name", sorted(RUNS))
def test_golden_run(tmp_path, name):
    summary = train(compose_cfg(*COMMON, *RUNS[name]), run_dir=tmp_path)
    _check(name, tmp_path, summary)


def test_golden_sigterm_resumed_run(tmp_path, monkeypatch):
    name, overrides, stop_at = RESUMED
    cfg = compose_cfg(*COMMON, *overrides)
    real_log = Tracker.log

    def log_then_sigterm(self, row):
        real_log(self, row)
        if row["step"] == stop_at:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(Tracker, "log", log_then_sigterm)
    assert train(cfg, run_dir=tmp_path) == {"status": "interrupted", "steps": stop_at, "signal": "SIGTERM"}
    monkeypatch.undo()
    summary = train(cfg, run_dir=tmp_path)
    _check(name, tmp_path, summary)


def test_a_changed_summation_order_fails_the_goldens(tmp_path, monkeypatch):
    """The batch's losses averaged in reverse order: equal in exact arithmetic, an ulp apart now and then in
    fp32. The golden comparison must notice (else it could not catch a real change either)."""
    import torch.nn.functional as F

    real = F.cross_entropy

    def summed(logits, target, reduction="mean", **kw):  # the training loss; evaluation's sums left alone
        if reduction != "mean":
            return real(logits, target, reduction=reduction, **kw)
        return real(logits, target, reduction="none", **kw).flip(0).sum() / len(target)

    monkeypatch.setattr(loop.F, "cross_entropy", summed)
    name = "mlp_noisy_bn"
    summary = train(compose_cfg(*COMMON, *RUNS[name]), run_dir=tmp_path)
    with pytest.raises(AssertionError):
        _check(name, tmp_path, summary)


# the instruction sets other x86-64 machines offer, emulated on this one: MKL's and oneDNN's dispatch capped,
# glibc's math functions without AVX-512 (or without AVX2 and FMA)
OTHER_CPUS = {
    "avx2": {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2",
             "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F,-AVX512DQ,-AVX512BW,-AVX512VL,-AVX512CD"},
    "sse4": {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "SSE41",
             "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F,-AVX512DQ,-AVX512BW,-AVX512VL,-AVX512CD,-AVX2,-FMA"},
}


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the instruction sets emulated are x86-64's")
@pytest.mark.parametrize("cpu", sorted(OTHER_CPUS))
def test_the_goldens_hold_on_a_cpu_with_another_instruction_set(tmp_path, cpu):
    """A conv net and the MLP, each in a fresh process that sees a CPU with fewer instruction sets (the
    unpinned trainer's numbers move with them: AVX-512 vs AVX2 differ from the first evaluation)."""
    names = ["resnet8", "mlp_log_val_final"]
    script = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import conftest, json, torch; "
              "from bnrepro.train import train; import test_golden_loop as g; torch.set_num_threads(1); "
              f"print(json.dumps({{n: {{'rows': None, 'summary': train(conftest.compose_cfg(*g.COMMON, *g.RUNS[n]), "
              f"run_dir={str(tmp_path)!r} + '/' + n)}} for n in {names!r}}}, default=str))")
    env = {**os.environ, **OTHER_CPUS[cpu]}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    summaries = json.loads(out.stdout.splitlines()[-1])
    for name in names:
        _check(name, tmp_path / name, summaries[name]["summary"])


class DrawingProbe(LoopProbe):
    """A probe that draws random numbers at every moment the loop gives it, inside a fork of the RNG
    (`forked=True`, as a probe must) or straight from the training RNG (to show the test would notice)."""

    def __init__(self, forked: bool = True):
        self.forked, self.drawn = forked, []

    def _draw(self):
        fork = torch.random.fork_rng(devices=[]) if self.forked else contextlib.nullcontext()
        with fork:
            self.drawn.append(torch.rand(()).item())

    @contextlib.contextmanager
    def _drawing(self):
        self._draw()
        yield
        self._draw()

    def keys(self):
        return ("dummy_draw",)

    def train_step(self):
        return self._drawing()

    def test_eval(self):
        return self._drawing()

    def values(self):
        self._draw()
        return {"dummy_draw": self.drawn[-1]}


def _with_probe(monkeypatch, probe):
    real = loop.build_probes
    monkeypatch.setattr(loop, "build_probes", lambda cfg, model: [*real(cfg, model), probe])


def test_a_probe_drawing_in_a_fork_of_the_rng_changes_nothing(tmp_path, monkeypatch):
    """Noisy BN and dropout draw from the training RNG at every step: any draw a probe leaked into it would
    move every number after the first evaluation."""
    _with_probe(monkeypatch, DrawingProbe(forked=True))
    name = "mlp_noisy_bn"
    summary = train(compose_cfg(*COMMON, *RUNS[name]), run_dir=tmp_path)
    rows = _rows(tmp_path)
    assert all("dummy_draw" in r for r in rows)
    want = json.loads((GOLDEN / f"{name}.json").read_text())
    assert [{k: v for k, v in r.items() if k != "dummy_draw"} for r in rows] == want["rows"]
    want["summary"].pop(IDENTITY)
    assert {k: v for k, v in json.loads(json.dumps(_summary(summary))).items() if k != IDENTITY} == want["summary"]


def test_a_probe_drawing_from_the_training_rng_would_be_caught(tmp_path, monkeypatch):
    _with_probe(monkeypatch, DrawingProbe(forked=False))
    name = "mlp_noisy_bn"
    train(compose_cfg(*COMMON, *RUNS[name]), run_dir=tmp_path)
    rows = [{k: v for k, v in r.items() if k != "dummy_draw"} for r in _rows(tmp_path)]
    assert rows != json.loads((GOLDEN / f"{name}.json").read_text())["rows"]


class PassesProbe(LoopProbe):
    """A probe that runs the model in training mode (forward + backward on the step's batch: BN running
    statistics move, .grad is overwritten, noisy BN and dropout draw) at every moment it is given, inside
    `preserved` (as a probe must) or not (to show the test would notice)."""

    def __init__(self, guarded: bool = True):
        self.guarded, self.seen = guarded, {"measure": [], "at_start": [], "at_end": []}

    def _passes(self, view, moment: str) -> float:
        guard = preserved(view.model) if self.guarded else contextlib.nullcontext()
        with guard:
            view.model.train()
            loss = view.loss(view.model(view.x), view.y)
            loss.backward()
        self.seen[moment].append((view.step, tuple(view.x.shape), view.lr))
        return loss.item()

    def keys(self):
        return ("passes_loss",)

    def measure(self, view):
        self.last = self._passes(view, "measure")

    def values(self):
        return {"passes_loss": self.last}

    def at_start(self, view):
        return {"passes_init_loss": self._passes(view, "at_start")}

    def at_end(self, view):
        return {"passes_end_loss": self._passes(view, "at_end")}


def test_a_probe_running_the_model_inside_preserved_changes_nothing(tmp_path, monkeypatch):
    """measure, at_start and at_end: a step-0 row with the at_start values, a value per evaluation, the end
    values in summary.json's end_probes, and the training numbers exactly the golden ones."""
    probe = PassesProbe(guarded=True)
    _with_probe(monkeypatch, probe)
    name = "mlp_noisy_bn"
    summary = train(compose_cfg(*COMMON, *RUNS[name]), run_dir=tmp_path)
    rows = _rows(tmp_path)
    assert rows[0]["step"] == 0 and set(rows[0]) == {"step", "passes_init_loss"}
    assert all("passes_loss" in r for r in rows[1:])
    want = json.loads((GOLDEN / f"{name}.json").read_text())
    assert [{k: v for k, v in r.items() if k != "passes_loss"} for r in rows[1:]] == want["rows"]
    got = json.loads(json.dumps(_summary(summary)))
    end = got.pop("end_probes")
    assert set(end) == {"passes_end_loss"} and end["passes_end_loss"] > 0
    want["summary"].pop(IDENTITY), got.pop(IDENTITY)
    assert got == want["summary"]
    assert [s for s, _, _ in probe.seen["measure"]] == [r["step"] for r in want["rows"]]
    assert probe.seen["at_start"][0][:2] == (0, (60, 1, 8, 8)) and probe.seen["at_end"][0][0] == 40


def test_a_fresh_start_after_a_killed_run_logs_its_step_0_row_once(tmp_path, monkeypatch):
    """A run killed (SIGKILL) before its first checkpoint left a step-0 row and a later one; the rerun starts
    fresh and its metrics.jsonl is exactly a first run's: one step-0 row, then the golden rows."""
    _with_probe(monkeypatch, PassesProbe(guarded=True))
    name = "mlp_noisy_bn"
    cfg = compose_cfg(*COMMON, *RUNS[name])
    real_log = Tracker.log

    def log_then_die(self, row):  # the step-20 row is written, then the process dies before its checkpoint
        real_log(self, row)
        if row["step"] == 20:
            raise SystemExit("killed")

    monkeypatch.setattr(Tracker, "log", log_then_die)
    with pytest.raises(SystemExit):
        train(cfg, run_dir=tmp_path)
    assert [r["step"] for r in _rows(tmp_path)] == [0, 20] and not (tmp_path / "checkpoints" / "last.pt").exists()
    monkeypatch.setattr(Tracker, "log", real_log)
    train(cfg, run_dir=tmp_path)
    rows = _rows(tmp_path)
    assert [r["step"] for r in rows].count(0) == 1
    want = json.loads((GOLDEN / f"{name}.json").read_text())
    assert [{k: v for k, v in r.items() if k != "passes_loss"} for r in rows[1:]] == want["rows"]


def test_a_probe_running_the_model_unguarded_would_be_caught(tmp_path, monkeypatch):
    _with_probe(monkeypatch, PassesProbe(guarded=False))
    name = "mlp_noisy_bn"
    train(compose_cfg(*COMMON, *RUNS[name]), run_dir=tmp_path)
    rows = [{k: v for k, v in r.items() if k != "passes_loss"} for r in _rows(tmp_path)[1:]]
    assert rows != json.loads((GOLDEN / f"{name}.json").read_text())["rows"]


def test_an_unknown_probe_is_refused_at_the_door(tmp_path):
    from bnrepro import ConfigError
    from bnrepro.door import checked as validate
    with pytest.raises(ConfigError, match="trainer.probes=.*unknown landscpe; choose from .*percentiles"):
        validate(compose_cfg(*COMMON, "trainer.probes=[percentiles,landscpe]"))


# every key of the dict fit kept before RunState (the checkpoints of earlier versions hold it)
OLD_STATE_KEYS = {"step", "targets", "row", "recent_test", "recent_val", "best_val_acc", "best_val_step",
                  "test_acc_at_best_val", "diag_best_test_acc", "last_eval_step", "wall_s", "last_eval_wall",
                  "loss_sum", "wandb_id"}


def test_run_state_reads_an_old_checkpoints_dict_and_writes_every_old_key():
    old = {"step": 40, "targets": {"0.5": 20, "0.9": None}, "row": {"step": 40, "test_acc": 0.7},
           "recent_test": [0.6, 0.7], "recent_val": [0.65, 0.72], "best_val_acc": 0.72, "best_val_step": 40,
           "test_acc_at_best_val": 0.7, "diag_best_test_acc": 0.7, "last_eval_step": 40, "wall_s": 3.5,
           "last_eval_wall": 3.4, "loss_sum": 1.25, "wandb_id": "abc"}
    assert set(old) == OLD_STATE_KEYS
    state = RunState.from_dict(old, targets=[0.5, 0.9])
    assert state.step == 40 and state.targets == {"0.5": 20, "0.9": None} and state.diverged_at is None
    assert OLD_STATE_KEYS <= set(state.to_dict())
    assert {k: v for k, v in state.to_dict().items() if k in OLD_STATE_KEYS} == old
    assert RunState.from_dict(state.to_dict(), targets=[]) == state
    fresh = RunState.from_dict({}, targets=[0.8])
    assert fresh == RunState.fresh([0.8]) and fresh.targets == {"0.8": None}
