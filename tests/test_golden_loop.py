"""Golden runs: the trainer's numbers for a few tiny configs, recorded before bnrepro/loop.py was split into
named parts (issue 10), must stay exactly the same (floats equal, not approximately). They cover the paths a
refactor can break: evaluation on a log grid with a validation split and every final_eval variant, the
training-mode probe under ghost and noisy BN (noisy BN draws from the global RNG at each step), a conv net,
a diverging run, and a run stopped by SIGTERM and resumed.

Regenerate (only when a change of numbers is intended, and say why in the commit):
    BNREPRO_GOLDEN_WRITE=1 .venv/bin/python -m pytest tests/test_golden_loop.py -q
"""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from bnrepro.tracking import Tracker
from bnrepro.train import train
from conftest import compose_cfg

GOLDEN = Path(__file__).parent / "data" / "golden_loop"
WRITE = os.environ.get("BNREPRO_GOLDEN_WRITE") == "1"
# what depends on the machine, the clock or the commit rather than on the run's numbers
ROW_TIMING = {"wall_s", "examples_per_s"}
SUMMARY_MACHINE = {"wall_s", "git_rev", "machine", "threads", "torch_version"}

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
    assert train(cfg, run_dir=tmp_path) == {"status": "interrupted", "steps": stop_at}
    monkeypatch.undo()
    summary = train(cfg, run_dir=tmp_path)
    _check(name, tmp_path, summary)
