"""Issue 19: the report writes only into a folder it owns, never replaces a report with less without --force,
reads every run dir whole or says which it could not, and says which runs came from uncommitted code. Run dirs
are the synthetic ones of tests/test_report.py; `adhoc` runs belong to no claim, so their reports draw no
figure and are quick."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from bnrepro.report.__main__ import main
from bnrepro.claims import CLAIMS
from bnrepro.report.judging import evaluate
from bnrepro.report.runs import load_run, load_runs
from bnrepro.report.writer import MARKER, report_facts
from bnrepro.train import train
from conftest import ROOT, compose_cfg
from tests.test_report import BN, make_run, s_c2

C2 = next(claim for claim in CLAIMS if claim.id == "C2")


def report(capsys, runs: Path, out: Path, *extra: str) -> tuple[int, list[str], str]:
    """(exit code, stderr lines, stdout) of `python -m bnrepro.report runs --out out ...`."""
    capsys.readouterr()
    try:
        main([str(runs), "--out", str(out), *extra])
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.err.strip().splitlines(), captured.out


def refused(capsys, runs: Path, out: Path, *extra: str) -> str:
    """The one `error:` line of a refusal (exit 2)."""
    code, err, _ = report(capsys, runs, out, *extra)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and err[0].endswith(
        ("nothing was written", "choose another --out")), err
    return err[0]


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def adhoc(root: Path, seeds=(0,)) -> Path:
    for seed in seeds:
        make_run(root, "adhoc", seed, {}, final=0.9)
    return root


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# --- 1. only into a folder the report owns ---------------------------------------------------------------

def test_out_that_is_or_holds_the_runs_the_repository_or_the_current_dir_is_refused(tmp_path, capsys, monkeypatch):
    """Was: --out runs/cpu deleted every run (exit 0); --out . a traceback (OSError Errno 16)."""
    from bnrepro.report import __main__ as cli, writer

    def never(*_):
        raise AssertionError("the guard let the report write")  # so that a broken guard cannot delete the repository

    monkeypatch.setattr(writer, "write_report", never)
    monkeypatch.setattr(cli, "swap_in", never)
    runs = adhoc(tmp_path / "runs")
    before = tree(tmp_path)
    for out, says in ((runs, "is the runs dir"), (tmp_path, "holds the runs dir"), (ROOT, "is the repository"),
                      (ROOT.parent, "holds the repository")):
        assert f"error: --out {out} {says}" in refused(capsys, runs, out)
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)  # an empty dir would pass as --out: it must not be the one we stand in
    assert refused(capsys, runs, Path(".")).startswith("error: --out . is the current directory")
    assert tree(tmp_path) == before


def test_out_with_files_the_report_did_not_write_is_refused(tmp_path, capsys):
    """Was: --out results deleted results/bench and results/cpu; --out a user's folder deleted its files."""
    runs = adhoc(tmp_path / "runs")
    results = tmp_path / "results"
    (results / "bench").mkdir(parents=True)
    (results / "bench" / "gpu.md").write_text("mine")
    assert report(capsys, runs, results / "cpu")[0] == 0  # a report folder inside is not the folder itself
    user = tmp_path / "notes"
    user.mkdir()
    (user / "todo.txt").write_text("mine")
    (tmp_path / "file").write_text("mine")
    before = tree(tmp_path)
    for out in (results, user):
        assert refused(capsys, runs, out) == (
            f"error: --out {out} is not empty and not a report folder (no {MARKER}), and the report replaces its "
            "--out whole: choose a new or empty folder; nothing was written")
    assert refused(capsys, runs, tmp_path / "file").startswith(f"error: --out {tmp_path / 'file'} is a file")
    older = tmp_path / "older"  # a report written before reports were marked: the line says how to mark it
    shutil.copytree(results / "cpu", older)
    (older / MARKER).unlink()
    assert f"mark it: echo '{{\"written_by\": \"bnrepro.report\"}}' > {older / MARKER})" in refused(capsys, runs, older)
    (older / MARKER).write_text('{"written_by": "bnrepro.report"}')
    assert report(capsys, runs, older)[0] == 0
    assert tree(tmp_path / "results") == {k[len("results/"):]: v for k, v in before.items() if k.startswith("results/")}
    assert tree(user) == {"todo.txt": b"mine"} and (tmp_path / "file").read_text() == "mine"


def test_every_report_folder_is_marked_and_replaced_whole(tmp_path, capsys):
    runs, out = adhoc(tmp_path / "runs"), tmp_path / "out"
    (out).mkdir()  # empty: allowed
    assert report(capsys, runs, out)[0] == 0
    assert json.loads((out / MARKER).read_text()) == {"written_by": "bnrepro.report", "runs": 0, "claims": 0,
                                                      "scale": "toy", "off_budget": 0}
    (out / "stale.png").write_text("from an older report")
    assert report(capsys, runs, out)[0] == 0
    assert not (out / "stale.png").exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_temporary_dirs_of_killed_report_runs_are_removed_and_live_ones_kept(tmp_path, capsys):
    """Was: a killed report run left .<name>.partial-<pid> forever."""
    runs, out = adhoc(tmp_path / "runs"), tmp_path / "out"
    dead, live = dead_pid(), 1  # pid 1 is always alive
    for name in (f".out.partial-{dead}", f".out.partial-{live}", f".other.partial-{dead}", f".out.old-{dead}"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "REPORT.md").write_text("x")
    # killed between swap_in's two renames: no out, the previous report aside. It is put back, then compared
    marker = {"written_by": "bnrepro.report", "runs": 9, "claims": 1, "scale": "cpu"}
    (tmp_path / f".out.old-{dead}" / MARKER).write_text(json.dumps(marker))
    code, err, _ = report(capsys, runs, out)
    assert code == 2 and err[-1].startswith(f"error: the report in {out} has 9 runs over 1 claim at scale cpu")
    assert (out / MARKER).exists() and "put the report back" in err[0]
    hidden = lambda: sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    assert hidden() == [f".other.partial-{dead}", f".out.partial-{live}"]
    (tmp_path / f".out.old-{dead}").mkdir()  # killed after both renames: the old copy is only removed
    assert report(capsys, runs, out)[0] == 2 and hidden() == [f".other.partial-{dead}", f".out.partial-{live}"]


# --- 2. never replaced by less without --force -----------------------------------------------------------

def test_a_report_of_fewer_runs_claims_or_another_scale_needs_force(tmp_path, capsys):
    s_c2(tmp_path / "full", "reproduced")
    out = tmp_path / "out"
    assert report(capsys, tmp_path / "full", out)[0] == 0
    assert report_facts(out) == {"runs": 20, "claims": 1, "scale": "toy", "off_budget": 0}
    for seed in (0, 1):
        make_run(tmp_path / "smoke", "c2_lr", seed, {**BN, "optim.lr_mult": 1}, final=0.9)
    before = tree(out)
    assert refused(capsys, tmp_path / "smoke", out) == (
        f"error: the report in {out} has 20 runs over 1 claim at scale toy; this one has 2 runs over 1 claim at "
        "scale toy: pass --force to replace it, or choose another --out")
    (out / MARKER).write_text('{"written_by": "bnrepro.report"}')  # no record (results/cpu before issue 19): derived
    assert "has 20 runs over 1 claim at scale toy;" in refused(capsys, tmp_path / "smoke", out)
    for marked, why in (({"runs": 1, "claims": 2, "scale": "cpu"}, "1 run over 2 claims at scale cpu;"),
                        ({"runs": 1, "claims": 1, "scale": "cifar"}, "1 run over 1 claim at scale cifar;")):
        (out / MARKER).write_text(json.dumps({"written_by": "bnrepro.report", **marked}))
        assert why in refused(capsys, tmp_path / "smoke", out)
    (out / MARKER).write_bytes(before[MARKER])
    assert tree(out) == before
    assert report(capsys, tmp_path / "full", out)[0] == 0  # the same runs again: allowed
    assert report(capsys, tmp_path / "smoke", out, "--force")[0] == 0
    assert "fewer runs than the report this one replaced** (2 vs 20)" in (out / "REPORT.md").read_text()


def test_the_committed_report_is_marked_with_what_its_claims_json_says(tmp_path):
    """`make report` on results/cpu: owned, and a report of fewer runs is refused (its marker's facts are those
    its claims.json and REPORT.md give)."""
    committed = ROOT / "results" / "cpu"
    marker = json.loads((committed / MARKER).read_text())
    assert marker["written_by"] == "bnrepro.report" and report_facts(committed)["scale"] == "cpu"
    copy = tmp_path / "cpu"
    copy.mkdir()
    for name in ("claims.json", "REPORT.md"):
        shutil.copy(committed / name, copy / name)
    (copy / MARKER).write_text('{"written_by": "bnrepro.report"}')
    derived = report_facts(copy)  # no off_budget there: counted as 0, so a smoke report never replaces it
    assert {k: v for k, v in report_facts(committed).items() if k != "off_budget"} == derived


# --- 3. every run read whole, or named ---------------------------------------------------------------------

def damage(run: Path, how: str) -> None:
    metrics, summary = run / "metrics.jsonl", run / "summary.json"
    rows = metrics.read_text().splitlines(keepends=True)
    if how == "no metrics":
        metrics.unlink()
    elif how == "garbage row":
        metrics.write_text("".join(rows[:5] + ["\x00\x00garbage\n"] + rows[5:]))
    elif how == "torn last row":
        metrics.write_text("".join(rows)[:-20])
    elif how == "duplicate row":  # two writers
        metrics.write_text("".join(rows[:5] + rows[4:]))
    elif how == "truncated summary":
        summary.write_text(summary.read_text()[:30])
    elif how == "summary a list":
        summary.write_text("[1, 2]")
    elif how == "garbage config":
        (run / ".hydra" / "config.yaml").write_text("model: [unclosed\n  norm: : bn")


DAMAGE = {"no metrics": "metrics.jsonl: missing",
          "garbage row": "metrics.jsonl: line 6 of 31 is not a JSON object",
          "torn last row": "metrics.jsonl: line 30 of 30 is not a JSON object (torn: the last line)",
          "duplicate row": "metrics.jsonl: line 6 of 31 has step 20 after step 20 (a row written twice or out of "
                           "order)",
          "truncated summary": "summary.json: not JSON (",
          "summary a list": "summary.json: not a JSON object (a list)",
          "garbage config": ".hydra/config.yaml: "}


def test_damaged_run_dirs_are_unreadable_runs_left_out_counted_and_listed(tmp_path, capsys):
    """Was: a missing metrics.jsonl, a garbage or torn row were read silently and changed the statistics; a
    damaged summary.json crashed the report with a traceback naming no file."""
    runs = tmp_path / "runs"
    s_c2(runs, "reproduced")
    dirs = sorted((runs / "c2_lr").iterdir(), key=lambda p: int(p.name))
    damaged = dict(zip(DAMAGE, dirs[::2]))  # one of each, spread over the arms
    for how, run in damaged.items():
        damage(run, how)
    loaded = {run.dir: run for run in load_runs(runs)}
    for how, run in damaged.items():
        assert loaded[run].status == "unreadable" and loaded[run].summary["error"].startswith(DAMAGE[how]), how
        assert loaded[run].name == "c2_lr"  # attributed by whichever of config and summary is readable
    code, err, _ = report(capsys, runs, tmp_path / "out")
    assert code == 0
    assert sorted(err) == sorted(f"warning: unreadable run {run}: {loaded[run].summary['error']} (left out, counted "
                                 "as failed)" for run in damaged.values())
    text = (tmp_path / "out" / "REPORT.md").read_text()
    assert "from 20 run directories (8 completed, 5 diverged, 7 unreadable)" in text
    assert "| 7 (7 unreadable) |" in text and "20 runs (7 failed, interrupted or unreadable, left out)" in text
    listed = text.split("## Failed, interrupted or unreadable runs (left out of every statistic)")[1]
    for run in damaged.values():
        assert f"- `{run}` (unreadable): {loaded[run].summary['error']}" in listed
    c2 = json.loads((tmp_path / "out" / "claims.json").read_text())["C2"]["data"]["all"]
    assert c2["failed"] == 7 and c2["unreadable"] == 7 and len(c2["runs"]) == 20
    for run in damaged.values():  # the numbers are those of the intact runs alone
        shutil.rmtree(run)
    assert c2["numbers"] == json.loads(json.dumps(evaluate(C2, load_runs(runs)).numbers, default=str))


def test_a_dir_with_nothing_readable_is_listed_but_belongs_to_no_claim(tmp_path):
    run = make_run(tmp_path, "c2_lr", 0, BN, final=0.9)
    damage(run, "garbage config")
    damage(run, "truncated summary")
    loaded = load_run(run)
    assert loaded.status == "unreadable" and loaded.name is None
    assert loaded.summary["error"].startswith(".hydra/config.yaml: ")  # the first damage found is named


@pytest.mark.parametrize("status", ["interrupted", "started", "failed"])
def test_runs_that_did_not_finish_are_left_out_and_counted(tmp_path, status):
    """A run stopped by SIGTERM (interrupted) or still running or killed (started): like a failed run, and its
    metrics (possibly torn: it was killed) are not checked since no statistic reads them."""
    s_c2(tmp_path, "reproduced")
    run = make_run(tmp_path, "c2_lr", 7, {**BN, "optim.lr_mult": 1}, final=0.1)
    (run / "summary.json").write_text(json.dumps({"status": status, "steps": 12, "name": "c2_lr"}))
    damage(run, "torn last row")
    result = evaluate(C2, load_runs(tmp_path))
    assert result.failed == 1 and result.unreadable == 0 and result.failed_text == "1"
    assert result.verdict == "reproduced" and result.numbers["arms"]["BN, x1"]["n"] == 5


def test_a_real_runs_steps_increase_strictly_from_the_probes_step_0_row(tmp_path):
    """What the strict reading assumes, on the trainer's own rows: one step-0 row (the probes' at
    initialization), then one row per evaluation."""
    cfg = compose_cfg("experiment=fig1", "trainer.max_steps=40", "trainer.progress=none", "logger=none",
                      "trainer.probes=[percentiles,init_gradients,weight_norms]")
    train(cfg, run_dir=tmp_path / "run")
    run = load_run(tmp_path / "run")
    assert run.status == "completed" and [row["step"] for row in run.metrics] == [0, 10, 20, 40]


# --- 4. provenance -------------------------------------------------------------------------------------------

def test_header_says_which_runs_were_made_from_uncommitted_code(tmp_path, capsys):
    runs = adhoc(tmp_path / "runs", seeds=(0, 1, 2))
    s_c2(runs, "reproduced")
    for run, dirty in ((runs / "adhoc" / "0", True), (runs / "c2_lr" / "0", True), (runs / "c2_lr" / "1", True),
                       (runs / "c2_lr" / "2", False)):
        summary = json.loads((run / "summary.json").read_text())
        (run / "summary.json").write_text(json.dumps({**summary, "git_dirty": dirty, "code_hash": "abc"}))
    assert report(capsys, runs, tmp_path / "out")[0] == 0
    header = (tmp_path / "out" / "REPORT.md").read_text().split("## How to read")[0]
    assert "**Warning: 3 runs were made from code with uncommitted changes** (adhoc: 1, c2_lr: 2)." in header


def test_a_report_of_runs_off_their_scales_step_budget_needs_force(tmp_path, capsys):
    """A smoke sweep of every run (`trainer.max_steps=20`) has as many runs and claims as the real suite: it may
    not replace the real report either."""
    from bnrepro.report.__main__ import expected_steps

    budget = expected_steps("c2_lr", "cpu")
    for root, steps in (("real", budget), ("smoke", 20)):
        for seed in (0, 1):
            make_run(tmp_path / root, "c2_lr", seed, {**BN, "optim.lr_mult": 1, "trainer.max_steps": steps}, final=0.9,
                     scale="cpu")
    out = tmp_path / "out"
    assert report(capsys, tmp_path / "real", out)[0] == 0
    assert report_facts(out) == {"runs": 2, "claims": 1, "scale": "cpu", "off_budget": 0}
    before = tree(out)
    assert refused(capsys, tmp_path / "smoke", out) == (
        f"error: the report in {out} has 2 runs over 1 claim at scale cpu; this one has 2 runs over 1 claim at "
        "scale cpu, 2 of them off the scale's step budget: pass --force to replace it, or choose another --out")
    assert tree(out) == before
    assert report(capsys, tmp_path / "smoke", out, "--force")[0] == 0
    assert f"its scale defines {budget}" in (out / "REPORT.md").read_text()
    assert report(capsys, tmp_path / "smoke", out)[0] == 0  # no worse than the report it replaces


def test_rows_lost_at_a_line_boundary_make_a_finished_run_unreadable(tmp_path):
    """Every line parses, but the last rows are gone (a file cut at a line's end): a finished run's last row is
    its last step, which summary.json records."""
    run = make_run(tmp_path, "c2_lr", 0, BN, final=0.9)
    metrics = run / "metrics.jsonl"
    rows = metrics.read_text().splitlines(keepends=True)
    metrics.write_text("".join(rows[:-3]))
    loaded = load_run(run)
    last, steps = json.loads(rows[-4])["step"], json.loads(rows[-1])["step"]
    assert loaded.status == "unreadable"
    assert loaded.summary["error"] == (f"metrics.jsonl: ends at step {last}, but summary.json says the run took "
                                       f"{steps} steps (rows lost)")
