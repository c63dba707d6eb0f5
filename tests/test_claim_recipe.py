"""CONTRIBUTING.md's "add a claim" recipe, done as a contributor would, in a copy of the code: one Python file
(bnrepro/claims/c99_toy.py: the paper's numbers, rule, judge, figure and W&B panels) and one config file
(configs/experiment/c99_toy.yaml: the sweep). Nothing lists the claims: the suite's experiment list finds it, the
trainer runs its sweep, and the report judges it, draws its figure and gives it its panels."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from conftest import ROOT

TOY_CLAIM = '''"""C99: a toy claim (tests/test_claim_recipe.py): BN does not score far below no BN."""
from __future__ import annotations

from bnrepro.report import plots as P
from bnrepro.report.judging import Claim, Judged, arm_json, arms_of, by_seed, diff, label, need, score
from bnrepro.report.panels import SCORE, TEST_ACC, line
from bnrepro.report.rules import CORE, Rule, Test

PAPER = {"gain": "none: a toy"}
RULE = Rule((Test("not_worse", CORE, "BN does not score far below no BN", "score(BN) - score(no BN)", "greater",
                  -0.5, why="a toy's bar: half the accuracy range"),))


def judge(runs):
    arms = arms_of(runs, ("model.norm",))
    s = {norm: by_seed(need(arms, (norm,), f"model.norm={norm}"), score) for norm in ("bn", "none")}
    return Judged({"not_worse": diff(s["bn"], s["none"])}, {"arms": {label(n): arm_json(v) for n, v in s.items()}},
                  f"BN - no BN {diff(s['bn'], s['none']).fmt()}")


def figure(result):
    fig, gs = P.frame(result, 10, 5, (1, 1))
    P.arm_dots(fig.add_subplot(gs[0, 0]), result.numbers["arms"], ylabel="score (%)")
    P.caption(fig, result)
    return fig


CLAIM = Claim("C99", "A toy claim", ("c99_toy",), PAPER, "no paper: a toy", RULE, ("model.norm",), judge)
FIGURE = figure
PANELS = [TEST_ACC, SCORE, line("training loss vs step", ["train_loss"])]
'''

TOY_EXPERIMENT = """# @package _global_
name: c99_toy
claim: C99
hydra:
  sweeper:
    params:
      model.norm: bn,none
      seed: 0,1,2
"""


def test_a_claim_is_one_module_and_one_config_file(tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "bnrepro", copy / "bnrepro", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "configs", copy / "configs")
    shutil.copytree(ROOT / "hydra_plugins", copy / "hydra_plugins", ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "bnrepro" / "claims" / "c99_toy.py").write_text(TOY_CLAIM)
    (copy / "configs" / "experiment" / "c99_toy.yaml").write_text(TOY_EXPERIMENT)
    env = {**os.environ, "PYTHONPATH": str(copy), "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}

    def run(*args):
        done = subprocess.run([sys.executable, "-m", *args], cwd=copy, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    assert run("bnrepro.arms").split()[-1] == "c99_toy"  # make reproduce and gpu_check would run it
    run("bnrepro.train", "-m", "experiment=c99_toy", "trainer.max_steps=40", "trainer.eval_every=20", "logger=none",
        "hydra/launcher=basic", f"hydra.sweep.dir={tmp_path / 'runs' / 'c99_toy'}")
    run("bnrepro.report", str(tmp_path / "runs"), "--out", str(tmp_path / "out"))
    claims = json.loads((tmp_path / "out" / "claims.json").read_text())
    toy = claims["C99"]["data"]["all"]  # one dataset and no frozen design: its runs judged together, exploratory
    assert list(claims)[-1] == "C99" and len(toy["runs"]) == 6 and claims["C99"]["verdict"] != "not run"
    assert "exploratory" in claims["C99"]["design"]
    assert toy["checks"][0]["key"] == "not_worse" and set(toy["numbers"]["arms"]) == {"BN", "no BN"}
    assert (tmp_path / "out" / "c99.png").stat().st_size > 10_000
    assert "C99: A toy claim" in (tmp_path / "out" / "REPORT.md").read_text()
    spec = json.loads((tmp_path / "out" / "wandb_report.json").read_text())
    titles = json.dumps(spec)
    assert "training loss vs step" in titles and "C99: A toy claim" in titles
