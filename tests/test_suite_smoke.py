"""The whole claims suite with tiny step budgets (1 confirmation seed, 20 steps) writes a complete report, in which
every claim's runs are refused as outside its frozen design (bnrepro/report/design.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLAIMS = ["fig1", *(f"C{i}" for i in range(1, 16))]


@pytest.mark.slow  # 16 sweeps, ~80 runs: minutes on 2 cores, mostly process start-up
def test_whole_suite_with_tiny_budgets_writes_a_complete_report(tmp_path):
    env = {**os.environ, "SCALE": "cpu", "LAUNCHER": "basic", "RUNS": str(tmp_path / "runs"),
           "OUT": str(tmp_path / "out"), "WANDB_MODE": "disabled", "PYTHON": sys.executable,
           "EXTRA": "trainer.max_steps=20 trainer.eval_every=5 seed=2000"}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "reproduce.sh")], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "total wall time" in done.stdout
    claims = json.loads((tmp_path / "out" / "claims.json").read_text())
    assert set(CLAIMS) == set(claims)
    for cid in CLAIMS:  # every claim ran, and its 20-step runs are refused: not its frozen design, not judged
        assert claims[cid]["verdict"] == "inconclusive" and claims[cid]["refused"], (cid, claims[cid]["combined"])
        assert any("the design says" in why for why in claims[cid]["refused"]), claims[cid]["refused"]
    report = (tmp_path / "out" / "REPORT.md").read_text()
    assert all(f"## {cid}:" in report for cid in CLAIMS)
    assert "not the scale's step budget" in report.split("## Claims")[0]  # a smoke run says so
    # the trainer skips finished runs, so a second pass over one experiment is quick and changes nothing
    again = subprocess.run(["bash", str(ROOT / "scripts" / "reproduce.sh")], env={**env, "EXPERIMENTS": "c10_small_lr"},
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "already completed" in again.stderr
    # every live panel of the W&B report shows keys the claim's runs really log (history rows, summary.json with
    # nested keys dotted, config), so a renamed probe key cannot leave a panel silently empty
    spec = json.loads((tmp_path / "out" / "wandb_report.json").read_text())
    for grid in (b for b in spec["blocks"] if b["type"] == "PanelGrid" and b["runsets"][0]["name"] != "figures"):
        experiment = grid["runsets"][0]["filters"].split("== '")[1].split("'")[0]
        logged = logged_keys(tmp_path / "runs" / experiment)
        for panel in grid["panels"]:
            for key in panel_keys(panel):
                assert key in logged, (experiment, panel["title"], key)


def flat(d: dict, prefix: str = "") -> set[str]:
    return {k for key, v in d.items()
            for k in (flat(v, f"{prefix}{key}.") if isinstance(v, dict) else {f"{prefix}{key}"})}


def logged_keys(experiment_dir: Path) -> set[str]:
    """History keys, summary keys (W&B's summary also holds each history key's last value) and config keys."""
    import yaml

    keys = set()
    for run in experiment_dir.iterdir():
        if (run / "summary.json").exists():
            keys |= {k for line in (run / "metrics.jsonl").read_text().splitlines() for k in json.loads(line)}
            keys |= flat(json.loads((run / "summary.json").read_text()))
            keys |= {f"config:{k}" for k in flat(yaml.safe_load((run / ".hydra" / "config.yaml").read_text()))}
    return keys


def panel_keys(panel: dict) -> list[str]:
    keys = list(panel.get("y", [])) if isinstance(panel.get("y"), list) else []
    keys += [m["summary"] for m in panel.get("metrics", [])]
    for axis in ("x", "y"):
        if isinstance(panel.get(axis), dict):
            kind, key = next(iter(panel[axis].items()))
            keys.append(f"config:{key}" if kind == "config" else key)
    return keys
