"""The W&B side of the report: runs' arms (job type), the Report built offline and its specification, publishing
without a login. Nothing here touches the network (WANDB_MODE=disabled by conftest; report.save() is never called)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import wandb_workspaces.reports.v2 as wr

from bnrepro import rundir
from bnrepro.arms import arm_of, varied_keys
from bnrepro.report.__main__ import main
from bnrepro.report.runs import Run
from bnrepro.report.panels import PROBES
from bnrepro.report.wandb_report import FILE, build_report, publish, report_spec, runs_filter, validate, write_spec
from conftest import compose_cfg


# --- arm_of ----------------------------------------------------------------------------------------------

def test_varied_keys_come_from_the_sweeps():
    assert varied_keys("c2_lr") == ("model.norm", "optim.lr_mult")
    assert varied_keys("c6_init", "cpu") == ("model.norm", "model.init_std")
    assert varied_keys("c6_init", "cifar") == ("model.norm", "model.init_scale")
    assert varied_keys("c7_small_batch") == ("norm_batch",)
    assert varied_keys("default") == () and varied_keys(None) == ()


def test_arm_of_flat_report_configs():
    assert arm_of({"name": "c2_lr", "scale_name": "cpu", "model.norm": "none", "optim.lr_mult": 30, "seed": 2}) \
        == "norm=none,lr_mult=30"
    assert arm_of({"name": "c6_init", "scale_name": "cpu", "model.norm": "bn", "model.init_std": 0.01}) \
        == "norm=bn,init_std=0.01"
    # a config-group sweep is named by the option whose values the run holds
    assert arm_of({"name": "c7_small_batch", "model.norm": "ghost_bn", "model.ghost_batch": 4}) == "norm_batch=bn_4"
    assert arm_of({"name": "c7_small_batch", "model.norm": "gn", "model.ghost_batch": 0}) == "norm_batch=gn"
    # C7's real-batch arms (cpu scale) hold gn's two values too: the most specific option names them
    assert arm_of({"name": "c7_small_batch", "scale_name": "cpu", "claim_params.c7_protocol": "real", "model.norm": "gn",
                   "model.ghost_batch": 0, "optim.scale_lr_by_batch": True, "trainer.batch_size": 32}) \
        == "norm_batch=real_gn_32"
    assert arm_of({"name": "c7_small_batch", "scale_name": "cpu", "claim_params.c7_protocol": "real", "model.norm": "bn",
                   "model.ghost_batch": 0, "optim.scale_lr_by_batch": True, "trainer.batch_size": 2}) \
        == "norm_batch=real_bn_2"
    assert arm_of({"name": "c1_speed", "claim_params.variant": "BN-x30", "model.norm": "bn"}) == "ladder=bn_x30"
    assert arm_of({"name": "c7_small_batch", "model.norm": "weird"}) == "norm_batch=other"
    assert arm_of({"name": "default", "model.norm": "bn"}) == "" and arm_of({}) == ""


@pytest.mark.parametrize("overrides, arm", [
    (["experiment=c2_lr", "optim.lr_mult=5", "model.norm=none"], "norm=none,lr_mult=5"),
    (["experiment=c1_speed", "ladder=bn_x5_sigmoid"], "ladder=bn_x5_sigmoid"),
    (["experiment=c1_speed", "ladder=inception", "scale=cifar"], "ladder=inception"),
    (["experiment=c7_small_batch", "norm_batch=brn_16"], "norm_batch=brn_16"),
    (["experiment=c6_init", "scale=cifar", "model.norm=none"], "norm=none,init_scale=1.0"),
    (["experiment=fig1", "seed=3"], "norm=bn"),
    ([], ""),
])
def test_arm_of_composed_configs(overrides, arm):
    assert arm_of(compose_cfg(*overrides)) == arm


def test_tracker_gives_wandb_group_job_type_and_tags(tmp_path, monkeypatch):
    import wandb

    from bnrepro.tracking import Tracker

    seen = {}

    class FakeRun:
        id = "abc"

    monkeypatch.setattr(wandb, "init", lambda **kwargs: seen.update(kwargs) or FakeRun())
    cfg = compose_cfg("experiment=c2_lr", "optim.lr_mult=30", "logger=wandb")
    Tracker(cfg, tmp_path)
    assert seen["group"] == "c2_lr" and seen["job_type"] == "norm=bn,lr_mult=30"
    assert set(seen["tags"]) == {"cpu", "C2"}
    assert seen["config"]["model"]["norm"] == "bn" and seen["config"]["optim"]["lr_mult"] == 30


# --- the Report ------------------------------------------------------------------------------------------

@dataclass
class FakeResult:
    """The Result fields the W&B report reads (judging.Result has these and more)."""

    id: str
    title: str
    experiment: str
    verdict: str = "reproduced"
    ours: str = "BN 97% vs no BN 93%"
    paper: str = "BN | is better"
    rule: str = "reproduced if BN is clearly higher"
    numbers: dict = field(default_factory=dict)
    checks: list = field(default_factory=list)
    runs: list = field(default_factory=list)
    data: str = ""

    @property
    def slug(self) -> str:
        return self.id.lower() + (f"_{self.data}" if self.data else "")


def fake_runs(name: str, arms: list[dict], seeds=(0, 1)) -> list[Run]:
    return [Run(dir=Path(f"/runs/{name}/{i}-{s}"), config={"name": name, "scale_name": "cpu", "seed": s, **arm},
                summary={"status": "completed", "scale": "cpu"})
            for i, arm in enumerate(arms) for s in seeds]


@pytest.fixture
def results():
    norms = [{"model.norm": "bn"}, {"model.norm": "none"}]
    return [
        FakeResult("fig1", "Figure 1", "fig1", runs=fake_runs("fig1", norms)),
        FakeResult("C2", "BN allows much higher learning rates", "c2_lr", checks=[("BN higher at x30", True)],
                   runs=fake_runs("c2_lr", [{**n, "optim.lr_mult": m} for n in norms for m in (1, 30)])),
        FakeResult("C4", "BN stabilizes the distribution of layer inputs", "fig1", verdict="partly",
                   runs=fake_runs("fig1", norms)),
        FakeResult("C7", "BN degrades with small batches; GN does not", "c7_small_batch",
                   runs=fake_runs("c7_small_batch", [{"model.norm": "ghost_bn", "model.ghost_batch": 2},
                                                     {"model.norm": "gn", "model.ghost_batch": 0}])),
        FakeResult("C9", "BN's gain is not from reducing covariate shift", "c9_noisy", verdict="not run"),
    ]


FIGURES = {"fig1": Path("/out/fig1.png"), "c2": Path("/out/c2.png"), "c4": Path("/out/c4.png"),
           "c7": Path("/out/c7.png")}  # keyed as the report keys them: the claim and dataset's file name


def sections(spec: dict) -> dict[str, list[dict]]:
    """The blocks under each H2 heading, by its text."""
    out, current = {}, None
    for block in spec["blocks"]:
        if block["type"] == "H2":
            current = out.setdefault(block["text"], [])
        elif current is not None:
            current.append(block)
    return out


def test_spec_has_the_table_then_one_section_per_claim(results):
    spec = report_spec(results, FIGURES, scale="cpu")
    assert spec["title"] == "Batch Normalization claims: cpu" and spec["project"] == "bnrepro"
    heads = [b["text"] for b in spec["blocks"] if b["type"] == "H2"]
    assert heads == ["Claims and verdicts", *[f"{r.id}: {r.title}" for r in results]]
    (table,) = sections(spec)["Claims and verdicts"]
    rows = table["text"].splitlines()
    assert rows[0].startswith("| claim | verdict |") and len(rows) == 2 + len(results)
    assert "| **C4** BN stabilizes" in rows[4] and "**partly**" in rows[4] and "BN \\| is better" in rows[3]
    c2 = sections(spec)["C2: BN allows much higher learning rates"]
    assert c2[0]["type"] == "MarkdownBlock" and "**Verdict: reproduced.**" in c2[0]["text"]
    assert "Rule: reproduced if BN is clearly higher" in c2[0]["text"] and "holds: BN higher at x30" in c2[0]["text"]
    assert "`norm=bn,lr_mult=30` (2)" in c2[0]["text"]


def test_each_claim_grid_filters_its_experiment_and_groups_by_arm(results):
    spec = report_spec(results, FIGURES, scale="cpu")
    for r in results:
        grid = next(b for b in sections(spec)[f"{r.id}: {r.title}"] if b["type"] == "PanelGrid")
        (runset,) = grid["runsets"]
        assert runset["filters"] == f"Metric('Group') == '{r.experiment}' and Config('scale_name') == 'cpu'"
        assert runset["groupby"] == ["JobType"]
        assert all(p.get("groupby", "JobType") == "JobType" for p in grid["panels"])
    assert runs_filter("c2_lr", None) == "Metric('Group') == 'c2_lr'"
    grids = {r.id: [b for b in sections(spec)[f"{r.id}: {r.title}"] if b["type"] == "PanelGrid"] for r in results}
    lines = {cid: [(p["x"], p["y"]) for p in g[0]["panels"] if p["type"] == "LinePlot"] for cid, g in grids.items()}
    assert ("Step", ["test_acc"]) in lines["C2"] and ("Step", PROBES) in lines["C4"] and ("Step", PROBES) in lines["fig1"]
    (scatter,) = [p for p in grids["C7"][0]["panels"] if p["type"] == "ScatterPlot"]
    assert scatter["x"] == {"config": "model.ghost_batch"} and scatter["y"] == {"summary": "final_acc"}
    # our figure: a media panel over the figures run, for the claims that have one
    media = grids["C7"][1]
    assert media["runsets"][0]["filters"] == "Metric('ID') == 'bnrepro-figures-cpu'"
    assert media["panels"][0]["media_keys"] == ["figures/c7"]
    assert len(grids["C9"]) == 1 and spec["figures"] == {"c2": "c2.png", "c4": "c4.png", "c7": "c7.png",
                                                        "fig1": "fig1.png"}


def test_the_wr_report_is_built_and_validated_offline(results):
    report = build_report(report_spec(results, FIGURES, scale="cpu"))
    assert isinstance(report, wr.Report) and report.title == "Batch Normalization claims: cpu"
    grids = [b for b in report.blocks if isinstance(b, wr.PanelGrid)]
    assert len(grids) == len(results) + len(FIGURES)
    assert all(rs.entity == "" and rs.project == "" for g in grids for rs in g.runsets)  # offline: no lookup
    c7 = grids[6]
    assert [type(p) for p in c7.panels] == [wr.ScatterPlot, wr.BarPlot, wr.BarPlot, wr.LinePlot]
    assert c7.panels[0].x == wr.Config("model.ghost_batch") and c7.panels[0].y == wr.SummaryMetric("final_acc")
    model = validate(report)  # W&B's view model, as save() would send it
    blocks = [b for b in model["spec"]["blocks"] if b["type"] == "panel-grid"]
    c2 = blocks[2]["metadata"]
    (filters,) = [rs["filters"]["filters"] for rs in c2["runSets"]]
    assert filters[0] == {"key": {"section": "run", "name": "group"}, "op": "=", "value": "c2_lr", "disabled": False}
    assert filters[1]["key"] == {"section": "config", "name": "scale_name"} and filters[1]["value"] == "cpu"
    panels = c2["panelBankSectionConfig"]["panels"]
    assert panels[0]["viewType"] == "Run History Line Plot"
    assert panels[0]["config"]["metrics"] == ["test_acc"] and panels[0]["config"]["groupBy"] == "jobType"
    scatter = blocks[6]["metadata"]["panelBankSectionConfig"]["panels"][0]["config"]
    assert scatter["xAxis"] == "config:model.value.ghost_batch" and scatter["yAxis"] == "summary:final_acc"


def test_c7_panels_follow_the_protocol_of_its_runs():
    """The scatter's x is the examples per normalization batch: the real batch in the GN paper's protocol (the cpu
    scale's real_* arms), the ghost batch in the ghost protocol; both show the mode gap from end_probes."""
    real = FakeResult("C7", "small batches", "c7_small_batch", runs=fake_runs(
        "c7_small_batch", [{"claim_params.c7_protocol": "real", "model.norm": n, "trainer.batch_size": b}
                           for n in ("bn", "gn") for b in (2, 32)]))
    ghost = FakeResult("C7", "small batches", "c7_small_batch",
                       runs=fake_runs("c7_small_batch", [{"model.norm": "ghost_bn", "model.ghost_batch": 2}]))
    for result, x in ((real, "trainer.batch_size"), (ghost, "model.ghost_batch")):
        (grid, *_) = [b for b in report_spec([result], {}, scale="cpu")["blocks"] if b["type"] == "PanelGrid"]
        scatter, _, gap, _ = grid["panels"]
        assert scatter["x"] == {"config": x} and gap["metrics"] == [{"summary": "end_probes.mode_gap"}]
        built = build_report(report_spec([result], {}, scale="cpu"))
        (panel, *_) = [b for b in built.blocks if isinstance(b, wr.PanelGrid)][0].panels
        assert panel.x == wr.Config(x)


def test_why_claims_get_panels_of_what_their_probes_log():
    """C12-C15 do not get the default accuracy panels alone: each shows the keys its probes write (a step-0 or
    per-evaluation history key, or a nested end_probes summary key), and W&B's view model accepts them."""
    ids = {"C12": "c12_init_gradients", "C13": "c13_decoupling", "C14": "c14_scale_invariance", "C15": "c15_folding"}
    results = [FakeResult(cid, cid, exp, runs=fake_runs(exp, [{"model.norm": "bn"}])) for cid, exp in ids.items()]
    spec = report_spec(results, {}, scale="cpu")
    keys = {}
    for r in results:
        (grid,) = [b for b in sections(spec)[f"{r.id}: {r.title}"] if b["type"] == "PanelGrid"]
        keys[r.id] = {str(k) for p in grid["panels"] for k in p.get("y", []) + [m["summary"] for m in
                                                                                 p.get("metrics", [])]}
    assert "init_grad_growth" in keys["C12"] and "train_loss" in keys["C13"]
    assert {"wnorm_0", "eff_lr_0", "end_probes.si_out_max", "end_probes.si_grad_max"} <= keys["C14"]
    assert {"end_probes.fold_fp64_max_rel_diff", "end_probes.fold_fp32_ratio", "end_probes.fold_disagree",
            "end_probes.fold_speedup"} == keys["C15"]
    model = validate(build_report(spec))
    bars = [p["config"] for b in model["spec"]["blocks"] if b["type"] == "panel-grid"
            for p in b["metadata"]["panelBankSectionConfig"]["panels"] if p["viewType"] == "Bar Chart"]
    assert any("end_probes.fold_fp64_max_rel_diff" in json.dumps(c) for c in bars)


def test_a_spec_of_another_format_is_refused(results):
    with pytest.raises(ValueError, match="bnrepro-wandb-report"):
        build_report({**report_spec(results, {}, scale="cpu"), "format": "other/9"})


# --- the file, from the CLI ------------------------------------------------------------------------------

def write_run(root: Path, name: str, seed: int, overrides: dict, final: float) -> None:
    """A tiny finished run directory: config, metrics, summary (scale "toy": no frozen design, judged as it is)."""
    run_dir = root / name / f"{'-'.join(f'{k}={v}' for k, v in overrides.items())},seed={seed}"
    config = {"name": name, "claim": None, "seed": seed, "scale_name": "toy", "logger": {"project": "bnrepro"},
              "model": {"norm": "bn", "ghost_batch": 0}, "optim": {"lr_mult": 1}, "targets": [0.5]}
    for dotted, value in overrides.items():
        section, key = dotted.split(".")
        config[section][key] = value
    rows = [{"step": s, "test_acc": final * (1 - math.exp(-s / 30)), "val_acc": final * (1 - math.exp(-s / 30)),
             "train_acc": final, "train_loss": 1 - final, "probe_p15": -1.0, "probe_p50": 0.0, "probe_p85": 1.0}
            for s in (20, 40, 60, 80, 100)]
    accs = [r["test_acc"] for r in rows]
    summary = {"status": "completed", "score": sum(accs[-3:]) / 3, "final_acc": accs[-1], "best_acc": max(accs),
               "final_train_acc": final, "steps": 100, "scale": "toy", "name": name, "steps_to": {"0.5": 20}}
    rundir.write_run(run_dir, config, rows, summary)


@pytest.fixture
def runs_dir(tmp_path):
    root = tmp_path / "runs"
    for seed in (0, 1):
        for norm, lr, final in (("bn", 1, 0.95), ("bn", 30, 0.94), ("none", 1, 0.93), ("none", 30, 0.2)):
            write_run(root, "c2_lr", seed, {"model.norm": norm, "optim.lr_mult": lr}, final + 0.01 * seed)
        for norm, ghost, final in (("ghost_bn", 2, 0.6), ("ghost_bn", 32, 0.9), ("gn", 0, 0.88)):
            write_run(root, "c7_small_batch", seed, {"model.norm": norm, "model.ghost_batch": ghost}, final)
    return root


def test_report_cli_writes_a_stable_specification(runs_dir, tmp_path, capsys):
    out = tmp_path / "results" / "cpu"
    main([str(runs_dir), "--out", str(out)])
    first = (out / FILE).read_bytes()
    assert f"wrote {out / FILE}" in capsys.readouterr().out
    main([str(runs_dir), "--out", str(out)])
    assert (out / FILE).read_bytes() == first  # deterministic: byte-identical when built twice
    spec = json.loads(first)
    assert spec["format"] == "bnrepro-wandb-report/1" and spec["scale"] == "toy" and spec["project"] == "bnrepro"
    assert b"timestamp" not in first.lower() and str(tmp_path).encode() not in first
    heads = [b["text"] for b in spec["blocks"] if b["type"] == "H2"]
    assert heads[0] == "Claims and verdicts" and any(h.startswith("C2:") for h in heads)
    c2 = sections(spec)[next(h for h in heads if h.startswith("C2:"))]
    assert "`norm=none,lr_mult=30` (2)" in c2[0]["text"]
    assert c2[1]["runsets"][0]["filters"] == "Metric('Group') == 'c2_lr' and Config('scale_name') == 'toy'"
    validate(build_report(spec))  # the file rebuilds the same, valid Report


def test_write_spec_output_is_what_the_cli_writes(runs_dir, tmp_path):
    from bnrepro.report.writer import write_report

    headlines, figures = write_report(runs_dir, tmp_path / "a")
    results = [r for h in headlines for r in h.per_data]  # a section per claim and dataset, as __main__ passes
    main([str(runs_dir), "--out", str(tmp_path / "b")])
    assert write_spec(results, figures, tmp_path / "a").read_bytes() == (tmp_path / "b" / FILE).read_bytes()


def test_a_failing_specification_never_fails_the_report(runs_dir, tmp_path, monkeypatch, capsys):
    import bnrepro.report.wandb_report as wandb_report

    monkeypatch.setattr(wandb_report, "write_spec", lambda *a: 1 / 0)
    main([str(runs_dir), "--out", str(tmp_path / "out")])
    assert (tmp_path / "out" / "REPORT.md").exists()
    assert "W&B report specification skipped: ZeroDivisionError" in capsys.readouterr().out


# --- publishing ------------------------------------------------------------------------------------------

@pytest.fixture
def logged_out(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc
    monkeypatch.setenv("NETRC", str(tmp_path / "home" / ".netrc"))


def test_publish_without_login_exits_2_with_one_line(runs_dir, tmp_path, logged_out, capsys):
    out = tmp_path / "results"
    main([str(runs_dir), "--out", str(out)])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["--publish-wandb", str(out)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and err[0].endswith("run wandb login first")


def test_publish_without_a_specification_exits_2(tmp_path, capsys):
    assert publish(tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"no {FILE} in {tmp_path}" in err[0]


def test_report_cli_needs_runs_dir_or_publish(capsys):
    with pytest.raises(SystemExit) as exit_:
        main([])
    assert exit_.value.code == 2


def test_report_with_wandb_offline_says_how_to_publish(runs_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    out = tmp_path / "out"
    main([str(runs_dir), "--out", str(out), "--wandb"])
    assert f"sync the runs, then publish with python -m bnrepro.report --publish-wandb {out}" in capsys.readouterr().out
