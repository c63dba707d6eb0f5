"""The mode_gap probe (C7's mechanism check): a run with it has exactly the golden numbers, and its values are
the training-subset accuracy in training mode (batch statistics per training batch) and in eval mode, computed
here by hand on the trained model."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from bnrepro import loop
from bnrepro.data import load_data
from bnrepro.probes import REGISTRY
from bnrepro.probes.mode_gap import ModeGap
from bnrepro.train import train
from conftest import compose_cfg

GOLDEN = Path(__file__).parent / "data" / "golden_loop"
COMMON = ("logger=none", "trainer.threads=1", "trainer.progress=none")
GHOST = ("trainer.max_steps=40", "trainer.eval_every=20", "model.norm=ghost_bn", "model.ghost_batch=15")
MACHINE = {"wall_s", "train_s", "train_cpu_s", "git_rev", "git_dirty", "code_hash", "machine", "threads", "torch_version", "config_hash"}


def test_a_run_with_mode_gap_has_the_golden_numbers(tmp_path):
    summary = train(compose_cfg(*COMMON, *GHOST, "trainer.probes=[percentiles,mode_gap]"), run_dir=tmp_path)
    want = json.loads((GOLDEN / "mlp_ghost_bn.json").read_text())
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    strip = lambda r: {k: v for k, v in r.items() if k not in ("wall_s", "examples_per_s")}
    assert [strip(r) for r in rows] == [strip(r) for r in want["rows"]]
    got = json.loads(json.dumps({k: v for k, v in summary.items() if k not in MACHINE}))
    end = got.pop("end_probes")
    assert got == {k: v for k, v in want["summary"].items() if k not in MACHINE}
    assert set(end) == {"train_mode_acc", "eval_mode_acc", "mode_gap"}
    assert end["mode_gap"] == end["train_mode_acc"] - end["eval_mode_acc"]


def test_mode_gap_matches_a_hand_computation(tmp_path, monkeypatch):
    seen = {}
    real = REGISTRY["mode_gap"]

    def keep(cfg, model):
        probes = real(cfg, model)
        seen["model"], seen["cfg"] = model, cfg
        return probes
    monkeypatch.setitem(REGISTRY, "mode_gap", keep)
    cfg = compose_cfg(*COMMON, *GHOST, "trainer.probes=[mode_gap]", "trainer.train_eval_examples=100")
    end = train(cfg, run_dir=tmp_path)["end_probes"]
    model = seen["model"]
    data = load_data(cfg.data)
    x, y = data._split("train", 100, int(cfg.seed))
    x, y = x[:60], y[:60]  # one full training batch of 60 (the other 40 examples are a partial batch: dropped)
    with torch.no_grad():
        model.eval()
        eval_acc = int((model(x).argmax(1) == y).sum()) / 60
        model.train()
        train_acc = int((model(x).argmax(1) == y).sum()) / 60
    # eval mode here reads the running statistics after the probe's training-mode pass: equal only because the
    # probe restored them
    assert abs(end["eval_mode_acc"] - eval_acc) < 1e-9 and abs(end["train_mode_acc"] - train_acc) < 1e-9
    assert isinstance(real(cfg, model)[0], ModeGap)
