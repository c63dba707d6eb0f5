"""The scorecard (bnrepro/scorecard/): each property judged by its claim's rule with the norm in BN's place
(synthetic runs), the cells decided without runs (not applicable, by construction), bad input (one `error:` line,
exit 2), and a toy norm from a package outside the repository scored end to end at a tiny budget, its reference
runs reused by config identity (the runs launched counted)."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from bnrepro.claims import MODULES
from bnrepro.report.judging import judge_claim
from bnrepro.report.properties import NOT_APPLICABLE, judge_property
from bnrepro.report.runs import load_runs
from bnrepro.scorecard import BUILTIN, checks
from bnrepro.scorecard.__main__ import main
from bnrepro.scorecard.card import plan
from test_report import CLAIM, SUITES

PROPERTY = {m.CLAIM.id: m.PROPERTY for m in MODULES if hasattr(m, "PROPERTY")}


def test_every_property_claim_declares_one_deciding_test_its_judge_measures():
    assert set(PROPERTY) == {"fig1", "C2", "C3", "C5", "C6", "C7", "C8", "C12", "C15"}
    for cid, prop in PROPERTY.items():
        keys = {t.key for t in CLAIM[cid].rule.tests}
        assert prop.key in keys, cid  # a test of the rule, or a test of its own on a measurement the judge makes
        assert prop.short and prop.name


# (claim, synthetic suite case) -> the property's outcome. C7's property is the opposite of its claim: a claim that
# BN degrades at small batches, reproduced, is a norm that is not robust there.
OUTCOMES = {("C2", "reproduced"): "holds", ("C2", "not reproduced"): "fails",
            ("C3", "reproduced"): "holds", ("C3", "not reproduced"): "fails", ("C3", "inconclusive"): "unclear",
            ("C5", "reproduced"): "holds", ("C5", "not reproduced"): "fails", ("C5", "inconclusive"): "unclear",
            ("C6", "reproduced"): "holds", ("C6", "not reproduced"): "fails", ("C6", "inconclusive"): "unclear",
            ("C7", "reproduced"): "fails", ("C7", "not reproduced"): "holds", ("C7", "inconclusive"): "unclear",
            ("fig1", "reproduced"): "holds", ("fig1", "not reproduced"): "fails"}


@pytest.mark.parametrize("cid,case", list(OUTCOMES))
def test_each_property_is_its_claims_rule_on_synthetic_runs(tmp_path, cid, case):
    SUITES[cid](tmp_path, case)
    cell = judge_property(PROPERTY[cid], CLAIM[cid], judge_claim(CLAIM[cid], load_runs(tmp_path)))
    assert cell["outcome"] == OUTCOMES[(cid, case)], cell
    (data,) = cell["data"].values()
    assert data["interval"]["n"] >= 3 and data["text"]  # the deciding interval, with its n
    if cell["outcome"] == "unclear":
        assert data["why"]  # what would decide it, or the precondition that did not hold


def test_a_precondition_that_does_not_hold_leaves_the_property_unclear_whatever_its_test_says(tmp_path):
    SUITES["C5"](tmp_path, "inconclusive")  # BN without dropout loses nothing, but dropout never helped no BN
    cell = judge_property(PROPERTY["C5"], CLAIM["C5"], judge_claim(CLAIM["C5"], load_runs(tmp_path)))
    (data,) = cell["data"].values()
    assert data["interval"]["lo"] > -0.01  # the test alone would hold
    assert cell["outcome"] == "unclear" and "precondition [dropout_helps]" in data["why"]


def test_c12s_property_reads_the_explosion_test_on_its_other_side():
    from bnrepro.report.stats import Interval

    test = PROPERTY["C12"].test
    assert test.outcome(Interval("t", 1.21, 1.15, 1.27, 5, "plain")) == "fails"  # BN's: explodes
    assert test.outcome(Interval("t", 1.00, 0.98, 1.02, 5, "plain")) == "holds"  # flat


def test_cells_decided_without_runs(tmp_path):
    runs = tmp_path / "runs"
    claims = {cid: CLAIM[cid] for cid in ("C2", "C8", "C15")}
    c8 = plan("gn", {"norm_groups": 4}, "cpu", runs, runs, claims["C8"], PROPERTY["C8"])
    assert c8.decided["outcome"] == NOT_APPLICABLE and "no batch statistics" in c8.decided["why"] and not c8.mine
    b0 = plan("evonorm_b0", {}, "cpu", runs, runs, claims["C8"], PROPERTY["C8"])  # batch statistics, not BN's buffers
    assert b0.decided["outcome"] == NOT_APPLICABLE and "precise BN" in b0.decided["why"]
    c15 = plan("ln", {}, "cpu", runs, runs, claims["C15"], PROPERTY["C15"])
    assert c15.decided["outcome"] == "fails" and "by construction" in c15.decided["combined"]
    wn = plan("wn", {}, "cpu", runs, runs, claims["C15"], PROPERTY["C15"])  # affine at inference, not a _BatchNorm
    assert wn.decided["outcome"] == NOT_APPLICABLE and "fold probe" in wn.decided["why"]
    c2 = plan("in", {}, "cpu", runs, runs, claims["C2"], PROPERTY["C2"])  # IN on the MLP: no positions
    assert c2.decided["outcome"] == NOT_APPLICABLE and "model.norm=in normalizes each channel" in c2.decided["why"]
    frozen = plan("frozen_bn", {}, "cpu", runs, runs, claims["C15"], PROPERTY["C15"])  # a BN: runs the design
    assert frozen.decided is None and frozen.mine and frozen.reference
    ghost = plan("ghost_bn", {"ghost_batch": 4}, "cpu", runs, runs, claims["C15"], PROPERTY["C15"])
    assert ghost.decided is None and ghost.mine
    assert c15.reference and not c15.mine  # decided without runs: BN's runs are still read for "vs BN"


def test_affine_at_inference_tells_the_norms_that_can_fold():
    assert checks.affine_at_inference("bn", {}) and checks.affine_at_inference("frozen_bn", {})
    assert checks.affine_at_inference("wn", {})  # a per-channel bias
    assert checks.affine_at_inference("ghost_bn", {"ghost_batch": 4})  # trained on whole ghost batches
    for norm, options in (("gn", {"norm_groups": 4}), ("ln", {}), ("frn", {}), ("evonorm_b0", {}), ("rmsnorm", {})):
        assert checks.affine_at_inference(norm, options) is False, norm


def test_every_builtin_norm_is_a_norm_layer_on_every_input():
    for norm, options in BUILTIN.items():
        fails = checks.check_layer(norm, options)
        assert [k for k, why in fails.items() if why] == (["features (N, C)"] if norm == "in" else []), (norm, fails)


PACKAGE = '''
import torch
from torch import nn


class ToyNorm(nn.Module):
    """Each example scaled to unit RMS over its values; a gain and a bias per channel."""

    def __init__(self, channels):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        shape = (1, -1) + (1,) * (x.dim() - 2)
        rms = x.pow(2).flatten(1).mean(1).add(1e-5).sqrt().view(-1, *(1,) * (x.dim() - 1))
        return x / rms * self.gain.view(shape) + self.bias.view(shape)


class Shrinks(nn.Module):
    def __init__(self, channels):
        super().__init__()

    def forward(self, x):
        return x[:, : x.shape[1] // 2]


class Breaks(nn.Module):
    def __init__(self, channels):
        super().__init__()

    def forward(self, x):
        raise RuntimeError("not on a batch of 2")
'''


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """A package outside the repository that holds a user's norms."""
    pkg = tmp_path / "site" / "sc_toynorms"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent(PACKAGE))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    return tmp_path


@pytest.mark.parametrize("argv,says", [
    (["norm=sc_toynorms.Missing"], "norm='sc_toynorms.Missing' is not a norm"),
    (["norm=nopackage.Norm"], "norm='nopackage.Norm' is not a norm"),
    (["norm=sc_toynorms.Shrinks"], "changes the tensor's shape"),
    (["norm=sc_toynorms.Breaks"], "fails on a batch of 2"),
    (["norm"], "is not a setting"),
    (["norm=gn", "trainer.max_steps=3"], "the scorecard takes norm=, scale="),
    (["norm=gn", "scale=laptop"], "scale=laptop is not a scale"),
    ([], "name one norm"),
    (["norm=gn", "--only", "C4"], "no claim of that name has a property"),
    (["norm=gn", "model.norm_groups=0"], "norm_groups"),
])
def test_bad_input_is_one_error_line_and_exit_2_with_nothing_written(toy, capsys, argv, says):
    out = toy / "out"
    assert main([*argv, "--out", str(out), "--runs", str(toy / "runs"), "--score-runs", str(toy / "sr")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and says in err[0], err
    assert not out.exists() and not (toy / "runs").exists() and not (toy / "sr").exists()


def test_a_toy_norm_from_outside_the_repo_scored_end_to_end_reusing_the_reference_runs(toy, capsys):
    runs, score_runs, out = toy / "runs", toy / "sr", toy / "out"
    tiny = ["--data", "digits", "--extra", "trainer.max_steps=12", "trainer.eval_every=4", "seed=2000,2001"]
    common = ["--only", "fig1,C8,C15", "--runs", str(runs), "--score-runs", str(score_runs), "--out", str(out),
              "--streams", "1", *tiny]
    assert main(["norm=sc_toynorms.ToyNorm", *common]) == 0
    card = json.loads((out / "scorecard.json").read_text())
    row = card["rows"]["sc_toynorms.ToyNorm"]
    # fig1: 2 seeds of the toy norm, and the reference arms (BN, no BN) launched into RUNS: nothing existed
    assert (row["launched"], row["reused"]) == (6, 0)
    assert len(list(runs.rglob("summary.json"))) == 4 and len(list(score_runs.rglob("summary.json"))) == 2
    cells = row["cells"]
    assert cells["C8"]["outcome"] == NOT_APPLICABLE and "no batch statistics" in cells["C8"]["why"]
    assert cells["C15"]["outcome"] == "fails" and "by construction" in cells["C15"]["combined"]
    fig1 = cells["fig1"]
    assert fig1["runs"] == 4 and fig1["vs_bn"] is not None  # BN's place taken by the toy norm: 2 + 2 no-BN runs
    # a smoke budget is outside fig1's frozen design: judged nothing, and says so
    assert fig1["outcome"] == "unclear" and "outside the frozen design" in json.dumps(fig1)
    md = (out / "SCORECARD.md").read_text()
    assert "| ToyNorm |" in md and "not applicable" in md and (out / "scorecard.png").stat().st_size > 10_000
    # again: every run is found by its config hash, none launched
    assert main(["norm=sc_toynorms.ToyNorm", *common]) == 0
    assert json.loads((out / "scorecard.json").read_text())["rows"]["sc_toynorms.ToyNorm"]["launched"] == 0
    # another norm: only its own arm is launched; BN's and no BN's runs are reused
    assert main(["norm=ln", *common]) == 0
    card = json.loads((out / "scorecard.json").read_text())
    assert (card["rows"]["ln"]["launched"], card["rows"]["ln"]["reused"]) == (2, 4)
    assert list(card["rows"]) == ["sc_toynorms.ToyNorm", "ln"]
    assert len(list(runs.rglob("summary.json"))) == 4  # no reference run retrained


def test_the_readmes_custom_norm_is_the_example_file_and_a_norm_layer(monkeypatch):
    from conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    code = (ROOT / "examples/mynorms/scalenorm.py").read_text()
    assert f"# examples/mynorms/scalenorm.py\n{code}```" in readme
    monkeypatch.syspath_prepend(str(ROOT / "examples/mynorms"))
    fails = checks.check_layer("scalenorm.ScaleNorm", {})
    assert not any(fails.values())
    assert checks.affine_at_inference("scalenorm.ScaleNorm", {}) is False  # per-example: C15 fails by construction


def test_c12s_profile_leaves_out_a_run_whose_gradient_overflowed_at_init():
    """Found by the scorecard: ghost BN (ghost batches of 4) in the plain 100-layer MLP overflows at init, and the
    probe writes the overflowed norms as null; C12's judge then stopped on them. Such a run has no growth rate and
    no profile (left out), and the others' profile stands."""
    from bnrepro.claims.c12_init_gradients import GROWTH, NORM, layer_norms, profile
    from bnrepro.report.runs import Run

    def run(norms, growth):
        row = {"step": 0, GROWTH: growth, **{f"{NORM}{i:03d}": v for i, v in enumerate(norms)}}
        return Run(dir=Path("."), config={}, summary={"status": "completed"}, metrics=[row])

    bad, good = run([1.0, None, 4.0], None), run([1.0, 10.0, 100.0], 10.0)
    assert layer_norms(bad) == [] and layer_norms(good) == [1.0, 10.0, 100.0]
    assert profile([bad, good])["mean"] == pytest.approx([0.0, 1.0, 2.0])
