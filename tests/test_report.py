"""The report on small synthetic run directories: verdicts for claims that hold and that do not, files, 'not run'."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from bnrepro.report import write_report
from bnrepro.report.__main__ import main

CLAIM_IDS = [f"C{i}" for i in range(1, 11)]
STEPS, EVALS = 2000, 20


def make_run(root: Path, name: str, seed: int, overrides: dict, final: float, *, rate: float = 1.0,
             status: str = "completed", probe_drift: float = 0.1, train_acc: float | None = None,
             final_eval: dict | None = None) -> Path:
    """One run directory as the loop writes it. Accuracy rises as final*(1-exp(-rate*t/300)); the probe's
    median moves linearly by probe_drift (in units of the spread 2.0) over training."""
    run_dir = root / name / f"{len(list((root / name).glob('*'))) if (root / name).exists() else 0}"
    (run_dir / ".hydra").mkdir(parents=True)
    config = {"seed": seed, "name": name, "claim": None, "targets": [0.5, 0.9], "scale": "cpu",
              "data": {"name": "digits"},
              "model": {"name": "mlp", "norm": "bn", "act": "sigmoid", "dropout": 0.0, "init_std": 0.1,
                        "ghost_batch": None, "hidden": [100, 100, 100]},
              "optim": {"lr": 0.1, "lr_mult": 1, "momentum": 0.9, "weight_decay": 0.0},
              "trainer": {"max_steps": STEPS, "batch_size": 60, "eval_every": STEPS // EVALS}}
    for dotted, value in overrides.items():
        node = config
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    seed_jitter = 0.002 * (seed - 1)
    rows, last = [], EVALS if status != "diverged" else EVALS // 4
    for i in range(1, last + 1):
        step = i * STEPS // EVALS
        acc = (final + seed_jitter) * (1 - math.exp(-rate * step / 300))
        median = 2.0 * probe_drift * step / STEPS
        rows.append({"step": step, "examples": 60 * step, "train_loss": 1 - acc, "test_loss": 1 - acc,
                     "test_acc": acc, "train_acc": min(1.0, acc + 0.02), "lr": 0.1, "wall_s": step / 1000,
                     "examples_per_s": 6e4, "probe_p15": median - 1.0, "probe_p50": median, "probe_p85": median + 1.0,
                     "probe_train_p15": median - 1.0, "probe_train_p50": median, "probe_train_p85": median + 1.0})
    if status == "diverged":
        rows.append({**rows[-1], "step": rows[-1]["step"] + 1, "train_loss": None, "test_loss": None, "test_acc": 0.1})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    accs = [r["test_acc"] for r in rows]
    summary = {"status": status, "best_acc": max(accs), "final_acc": accs[-1],
               "final_train_acc": train_acc if train_acc is not None else min(1.0, accs[-1] + 0.02),
               "steps_to": {str(t): next((r["step"] for r in rows if r["test_acc"] >= t), None) for t in (0.5, 0.9)},
               "steps": rows[-1]["step"], "wall_s": 2.0, "params": 1000, "git_rev": "abc", "torch_version": "2",
               "name": name, "claim": None, "scale": "cpu", "diverged_at": rows[-1]["step"] if status == "diverged" else None,
               "final_eval": final_eval or {}}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


def sweep(root: Path, name: str, arms: list[tuple[dict, dict]], seeds=(0, 1, 2)) -> None:
    for overrides, outcome in arms:
        for seed in seeds:
            make_run(root, name, seed, overrides, **outcome)


def suite_that_holds(root: Path) -> None:
    """Synthetic runs in which every claim holds, by a wide margin."""
    bn, none = {"model.norm": "bn"}, {"model.norm": "none"}
    sweep(root, "fig1", [(bn, dict(final=0.97, rate=3, probe_drift=0.05)), (none, dict(final=0.93, probe_drift=0.6))])
    ladder = [("Inception", "none", 1, "relu", dict(final=0.90)), ("BN-Baseline", "bn", 1, "relu", dict(final=0.91, rate=2)),
              ("BN-x5", "bn", 5, "relu", dict(final=0.92, rate=8)), ("BN-x30", "bn", 30, "relu", dict(final=0.93, rate=6)),
              ("BN-x5-Sigmoid", "bn", 5, "sigmoid", dict(final=0.88, rate=4))]
    sweep(root, "c1_speed", [({"variant": v, "model.norm": n, "optim.lr_mult": lr, "model.act": a}, o)
                             for v, n, lr, a, o in ladder])
    sweep(root, "c2_lr", [({**bn, "optim.lr_mult": 1}, dict(final=0.96)), ({**bn, "optim.lr_mult": 30}, dict(final=0.965)),
                          ({**none, "optim.lr_mult": 1}, dict(final=0.95)),
                          ({**none, "optim.lr_mult": 30}, dict(final=0.5, status="diverged"))])
    sweep(root, "c3_sigmoid", [({**bn, "model.act": "sigmoid"}, dict(final=0.95)), ({**none, "model.act": "sigmoid"}, dict(final=0.3)),
                               ({**bn, "model.act": "relu"}, dict(final=0.96)), ({**none, "model.act": "relu"}, dict(final=0.94))])
    sweep(root, "c4_drift", [(bn, dict(final=0.96, probe_drift=0.05)), (none, dict(final=0.94, probe_drift=0.5))])
    sweep(root, "c5_dropout", [({**bn, "model.dropout": 0.0}, dict(final=0.96, train_acc=0.97)),
                               ({**bn, "model.dropout": 0.4}, dict(final=0.955, train_acc=0.965)),
                               ({**none, "model.dropout": 0.0}, dict(final=0.90, train_acc=1.0)),
                               ({**none, "model.dropout": 0.4}, dict(final=0.94, train_acc=0.98))])
    sweep(root, "c6_init", [({**n, "model.init_std": s}, dict(final=f)) for n, s, f in
                            [(bn, 0.01, 0.96), (bn, 0.1, 0.965), (bn, 1.0, 0.96),
                             (none, 0.01, 0.5), (none, 0.1, 0.94), (none, 1.0, 0.8)]])
    sweep(root, "c7_small_batch", [({"model.norm": "ghost_bn", "model.ghost_batch": g}, dict(final=f))
                                   for g, f in ((2, 0.6), (8, 0.9), (32, 0.95))]
          + [({"model.norm": "gn", "model.ghost_batch": 0}, dict(final=0.94)),  # as the sweep runs them: once,
             ({"model.norm": "ln", "model.ghost_batch": 0}, dict(final=0.93))])  # at the whole batch
    sweep(root, "c8_popstats", [({**bn, "model.ghost_batch": g}, dict(final=0.95, final_eval=fe)) for g, fe in
                                ((4, {"ema": 0.90, "precise": 0.95, "batch": 0.80}),
                                 (32, {"ema": 0.95, "precise": 0.955, "batch": 0.94}))])
    sweep(root, "c9_noisy", [(bn, dict(final=0.96, probe_drift=0.05)), ({"model.norm": "noisy_bn"}, dict(final=0.955, probe_drift=0.3)),
                             (none, dict(final=0.90, probe_drift=0.5))])
    sweep(root, "c10_small_lr", [({**n, "optim.lr_mult": lr}, dict(final=f)) for n, lr, f in
                                 [(bn, 0.1, 0.93), (none, 0.1, 0.925), (bn, 1, 0.96), (none, 1, 0.90)]])


@pytest.fixture(scope="module")
def holding_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    suite_that_holds(root)
    out = tmp_path_factory.mktemp("out")
    results, figures = write_report(root, out)
    return {r.id: r for r in results}, figures, out


def test_every_claim_that_holds_is_reproduced(holding_report):
    results, _, _ = holding_report
    assert {cid: r.verdict for cid, r in results.items()} == {cid: "reproduced" for cid in ["fig1", *CLAIM_IDS]}


def test_claims_json_has_every_claim_with_its_keys(holding_report):
    _, _, out = holding_report
    claims = json.loads((out / "claims.json").read_text())
    assert set(CLAIM_IDS) <= set(claims)
    for cid in CLAIM_IDS:
        assert {"verdict", "ours", "paper", "rule", "runs"} <= set(claims[cid])
        assert claims[cid]["runs"] and not any(Path(d).is_absolute() for d in claims[cid]["runs"])  # relative to RUNS
    assert len(claims["C2"]["runs"]) == 12
    assert claims["C2"]["numbers"]["diverged"]["none, x30"] == 3
    assert claims["C1"]["numbers"]["ladder"]["BN-x5"]["speedup"] > 2


def test_figures_and_report_are_written(holding_report):
    results, figures, out = holding_report
    assert set(figures) == set(results)
    for path in figures.values():
        assert path.exists() and path.stat().st_size > 10_000
    report = (out / "REPORT.md").read_text()
    assert report.index("## Claims") < report.index("## fig1")
    for cid in CLAIM_IDS:
        assert f"## {cid}:" in report and f"![{cid}]({cid.lower()}.png)" in report
    assert "| 90.0% |" in report  # fig1's steps-to-target table


def test_claim_that_does_not_hold_is_not_reproduced(tmp_path):
    """C2 with identical accuracies for BN and no BN at every LR: no evidence that BN allows higher LRs."""
    for norm in ("bn", "none"):
        sweep(tmp_path, "c2_lr", [({"model.norm": norm, "optim.lr_mult": lr}, dict(final=0.95)) for lr in (1, 5, 30)])
    sweep(tmp_path, "c6_init", [({"model.norm": n, "model.init_std": s}, dict(final=0.95)) for n in ("bn", "none")
                                for s in (0.01, 1.0)])
    results = {r.id: r for r in write_report(tmp_path, tmp_path / "out")[0]}
    assert results["C2"].verdict == "not reproduced"
    assert results["C6"].verdict == "not reproduced"  # spread 0 for both: initialization did not matter
    assert results["C3"].verdict == "not run"


def test_c6_reads_the_conv_nets_init_scale(tmp_path):
    """Conv families vary model.init_scale (the MLP's model.init_std stays put): C6 groups by what varied."""
    sweep(tmp_path, "c6_init", [({"model.name": "resnet_cifar", "model.norm": n, "model.init_scale": s}, dict(final=f))
                                for n, s, f in [("bn", 0.1, 0.9), ("bn", 1.0, 0.91), ("bn", 10.0, 0.9),
                                                ("none", 0.1, 0.3), ("none", 1.0, 0.88), ("none", 10.0, 0.1)]])
    results, figures = write_report(tmp_path, tmp_path / "out")
    c6 = {r.id: r for r in results}["C6"]
    assert c6.verdict == "reproduced" and c6.numbers["init_key"] == "model.init_scale"
    assert math.isclose(c6.numbers["spread"]["none"], 0.88 - 0.1, abs_tol=1e-3)
    assert figures["C6"].stat().st_size > 10_000


def test_partial_and_missing_arms(tmp_path):
    """BN beats no BN at x30 but loses 10 points against its own best LR: partly. A claim lacking an arm: not run."""
    sweep(tmp_path, "c2_lr", [({"model.norm": "bn", "optim.lr_mult": 1}, dict(final=0.96)),
                              ({"model.norm": "bn", "optim.lr_mult": 30}, dict(final=0.86)),
                              ({"model.norm": "none", "optim.lr_mult": 30}, dict(final=0.5, status="diverged"))])
    sweep(tmp_path, "c3_sigmoid", [({"model.norm": "bn", "model.act": "sigmoid"}, dict(final=0.9))])
    results = {r.id: r for r in write_report(tmp_path, tmp_path / "out")[0]}
    assert results["C2"].verdict == "partly"
    assert results["C3"].verdict == "not run" and "no BN" in results["C3"].ours


def test_no_runs_is_an_error_and_writes_nothing(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2 and not (tmp_path / "out").exists()
    assert capsys.readouterr().err.startswith(f"error: no run directories (with a summary.json) under {tmp_path}")


def test_runs_of_no_claim_give_not_run_everywhere(tmp_path, capsys):
    make_run(tmp_path / "runs", "adhoc", 0, {}, final=0.9)
    main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")])
    claims = json.loads((tmp_path / "out" / "claims.json").read_text())
    assert {c["verdict"] for c in claims.values()} == {"not run"}
    assert (tmp_path / "out" / "REPORT.md").exists()
    assert "not run" in capsys.readouterr().out


def test_wandb_summary_run_is_never_fatal(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "bogus-mode")  # wandb.init rejects it: the report must still be written
    sweep(tmp_path / "runs", "c10_small_lr", [({"model.norm": n, "optim.lr_mult": lr}, dict(final=0.9))
                                              for n in ("bn", "none") for lr in (0.1, 1)], seeds=(0,))
    main([str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--wandb"])
    assert "W&B summary run skipped" in capsys.readouterr().out
    assert (tmp_path / "out" / "c10.png").stat().st_size > 0
