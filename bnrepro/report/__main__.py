"""python -m bnrepro.report RUNS_DIR --out results/<scale> [--force] [--wandb]
python -m bnrepro.report --publish-wandb results/<scale> [--entity ENTITY]

The report writes only into a folder it owns and never replaces a report with less. --out must be missing,
empty, or a report folder (the marker file .bnrepro-report, which every report writes); it must not be or hold
RUNS_DIR, the repository or the current directory. A report made from fewer runs, fewer claims or another scale
than the one in --out is refused unless --force. Each refusal is one `error:` line, exit 2, nothing written; so
is RUNS_DIR without run directories. The report is written into a temporary dir beside --out and swapped in only
when complete; those of killed report runs are removed at the next start. Its header names the machine(s) the
runs came from and warns about runs off their scale's step budget, runs made from uncommitted code, and (with
--force) fewer runs than the report it replaced. A run dir with a damaged file is listed, counted and left out.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections import Counter
from pathlib import Path

from bnrepro import ConfigError, rundir
from bnrepro.report.design import arm_overrides, budget, expected_steps  # noqa: F401 - tests use them here
from bnrepro.report.writer import MARKER

NOTHING = "nothing was written"


def check_paths(runs_dir: Path, out: Path) -> None:
    """Refuse what the report must not do (ConfigError, before anything is written); remove the temporary dirs
    that killed report runs left beside out."""
    from bnrepro.door import writable

    if not runs_dir.is_dir() or not rundir.find(runs_dir):
        raise ConfigError(f"no run directories (with a summary.json) under {runs_dir}: pass the dir the sweeps "
                          f"wrote (RUNS=runs/<scale>); {NOTHING}")
    dest = Path(os.path.abspath(out))
    check_not_protected(runs_dir, out)
    clear_stale(dest)
    check_owned(out, dest)
    try:
        writable(dest.parent)
        if dest.exists():
            writable(dest)
    except ConfigError:
        raise ConfigError(f"cannot write the report to {out}: choose another --out or make it writable; "
                          f"{NOTHING}") from None


def protected(runs_dir: Path) -> list[tuple[str, Path]]:
    """Folders a report must never replace (the report replaces its --out whole), nor any folder above them."""
    import bnrepro

    def root(start: Path, marks: tuple[str, ...]) -> Path | None:
        return next((p for p in (start, *start.parents) if any((p / m).exists() for m in marks)), None)

    cwd = Path.cwd().resolve()
    # the repository first: an --out above both it and the runs dir is named by the larger loss
    found = [("the repository", root(Path(bnrepro.__file__).resolve().parent, ("pyproject.toml", ".git"))),
             ("the repository", root(cwd, (".git",))), ("the runs dir", runs_dir.resolve()),
             ("the current directory", cwd)]
    return [(what, path) for what, path in found if path is not None]


def check_not_protected(runs_dir: Path, out: Path) -> None:
    target = out.resolve()
    for what, path in protected(runs_dir):
        if target == path or target in path.parents:
            raise ConfigError(f"--out {out} {'is' if target == path else 'holds'} {what} ({path}), and the report "
                              f"replaces its --out whole: choose another --out, e.g. results/<scale>; {NOTHING}")


def owned(dest: Path) -> bool:
    """Whether dest holds the marker a report writes (or one added by hand to an older report)."""
    try:
        return json.loads((dest / MARKER).read_text()).get("written_by") == "bnrepro.report"
    except (OSError, ValueError, AttributeError):
        return False


def check_owned(out: Path, dest: Path) -> None:
    """--out must be missing, empty or a report folder: anything else would be deleted by the swap."""
    if not dest.exists():
        return
    if not dest.is_dir():
        raise ConfigError(f"--out {out} is a file: choose a folder for the report; {NOTHING}")
    try:
        if not any(dest.iterdir()) or owned(dest):
            return
    except OSError:
        raise ConfigError(f"cannot write the report to {out}: choose another --out or make it writable; "
                          f"{NOTHING}") from None
    older = (dest / "REPORT.md").exists() and (dest / "claims.json").exists()
    hint = (f" (if it is a report written before reports were marked, mark it: echo "
            f"'{{\"written_by\": \"bnrepro.report\"}}' > {out / MARKER})") if older else ""
    raise ConfigError(f"--out {out} is not empty and not a report folder (no {MARKER}), and the report replaces "
                      f"its --out whole: choose a new or empty folder{hint}; {NOTHING}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def clear_stale(dest: Path) -> None:
    """Remove the .<name>.partial-<pid> and .<name>.old-<pid> dirs beside dest whose report run is dead (a live
    one's are in use). A kill between swap_in's two renames leaves no dest and the previous report aside in
    .old-<pid>: that one is put back, not removed."""
    prefix = f".{dest.name}."
    if not dest.parent.is_dir():
        return
    for path in sorted(dest.parent.iterdir()):
        if not path.name.startswith(prefix):
            continue
        kind, _, pid = path.name[len(prefix):].partition("-")
        if kind not in ("partial", "old") or not pid.isdigit() or alive(int(pid)):
            continue
        if kind == "old" and not dest.exists():
            os.replace(path, dest)
            print(f"warning: put the report back into {dest} from {path.name}, left aside by a killed report run",
                  file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


def check_not_less(new: dict, out: Path) -> None:
    """Refuse to replace the report in out by one made of fewer runs, fewer claims, another scale or more runs
    off their scale's step budget (a smoke sweep of every run, `trainer.max_steps=20`, has all the runs)."""
    from bnrepro.report.writer import report_facts

    old = report_facts(Path(os.path.abspath(out)))
    if old and (new["runs"] < old["runs"] or new["claims"] < old["claims"] or new["scale"] != old["scale"]
                or new.get("off_budget", 0) > old.get("off_budget", 0)):
        raise ConfigError(f"the report in {out} has {_facts_text(old)}; this one has {_facts_text(new)}: pass "
                          "--force to replace it, or choose another --out")


def _facts_text(facts: dict) -> str:
    runs, claims, off = facts["runs"], facts["claims"], facts.get("off_budget", 0)
    return (f"{runs} run{'s' * (runs != 1)} over {claims} claim{'s' * (claims != 1)} at scale {facts['scale']}"
            + (f", {off} of them off the scale's step budget" if off else ""))


def machine_line(machine: dict | None) -> str:
    if not machine:
        return "not recorded"
    libs = ", ".join(f"{k} {machine[k]}" for k in ("torch", "mkl", "onednn") if machine.get(k))
    cuda = machine.get("cuda") or {}
    gpu = f", GPU {cuda.get('device')}" if cuda else ""
    return f"{machine.get('cpu')} ({machine.get('arch')}, {machine.get('isa')}){gpu}; {libs}"


def off_budget(runs) -> list[tuple]:
    """(run, the steps its scale defines) for each run trained to another step budget than `experiment=X scale=Y`
    defines for its arm (a smoke sweep's `trainer.max_steps=20`)."""
    off = []
    for run in runs:
        expected, steps = budget(run), run.get("trainer.max_steps")
        if expected is not None and steps is not None and int(steps) != expected:
            off.append((run, expected))
    return off


def header_notes(runs, out: Path, n_runs: int) -> list[str]:
    """Lines for the report's header: the machines, and every way this report has less than it should."""
    from bnrepro.report.judging import usable

    notes, used = [], [run for run in runs if usable(run)]  # the runs the numbers come from
    machines = sorted({machine_line(run.summary.get("machine")) for run in used or runs})
    notes.append(f"Runs made on: {'; '.join(machines)}." if len(machines) == 1 else
                 f"Runs made on {len(machines)} different machines: {' | '.join(machines)}.")
    off = {}
    for run, expected in off_budget(used):
        off.setdefault(run.name, set()).add((int(run.get("trainer.max_steps")), expected))
    for name, pairs in sorted(off.items()):
        got = ", ".join(str(s) for s, _ in sorted(pairs))
        notes.append(f"**Warning: not the scale's step budget.** `{name}` has runs of {got} steps; its scale "
                     f"defines {next(iter(pairs))[1]}.")
    dirty = Counter(str(run.name) for run in used if run.summary.get("git_dirty") is True)
    if dirty:
        n = sum(dirty.values())
        notes.append(f"**Warning: {n} run{'s were' if n > 1 else ' was'} made from code with uncommitted changes** "
                     f"({', '.join(f'{name}: {k}' for name, k in sorted(dirty.items()))}).")
    from bnrepro.report.writer import report_facts

    before = (report_facts(out) or {}).get("runs")
    if before is not None and n_runs < before:
        notes.append(f"**Warning: fewer runs than the report this one replaced** ({n_runs} vs {before}).")
    return notes


def swap_in(tmp: Path, out: Path) -> None:
    """Replace out by the complete tmp: two renames, then the old copy is removed."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bnrepro.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs_dir", type=Path, nargs="?",
                        help="directory searched recursively for run dirs (summary.json)")
    parser.add_argument("--out", type=Path, default=Path("results/cpu"),
                        help="where REPORT.md, claims.json, PNGs go: a new or empty folder, or a report's")
    parser.add_argument("--force", action="store_true",
                        help="replace the report in --out even by one of fewer runs, fewer claims or another scale")
    parser.add_argument("--wandb", action="store_true", help="also log the table and figures as one W&B run")
    parser.add_argument("--publish-wandb", type=Path, metavar="RESULTS_DIR",
                        help="save the W&B Report described by RESULTS_DIR/wandb_report.json online (after "
                             "`wandb sync` of the offline runs); needs `wandb login`")
    parser.add_argument("--entity", help="W&B entity for --publish-wandb (default: the runs' logger.entity, "
                                         "else your default entity)")
    args = parser.parse_args(argv)
    if args.publish_wandb is not None:
        from bnrepro.report.wandb_report import publish

        sys.exit(publish(args.publish_wandb, entity=args.entity))
    if args.runs_dir is None:
        parser.error("RUNS_DIR is required (or --publish-wandb RESULTS_DIR)")
    from bnrepro.report.runs import load_runs
    from bnrepro.report.writer import facts, write_report

    out = args.out
    try:
        check_paths(args.runs_dir, out)
        runs = load_runs(args.runs_dir)
        for run in runs:
            if run.status == "unreadable":
                print(f"warning: unreadable run {run.dir}: {run.summary['error']} (left out, counted as failed)",
                      file=sys.stderr)
        from bnrepro.report.judging import usable

        recorded = {**facts(runs), "off_budget": len(off_budget([run for run in runs if usable(run)]))}
        if not args.force:
            check_not_less(recorded, out)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    dest = Path(os.path.abspath(out))  # "." or "x/..": a name to put the temporary dir beside
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)  # left by a dead process that had our pid
    try:
        headlines, figures = write_report(args.runs_dir, tmp, notes=lambda n: header_notes(runs, dest, n),
                                          runs=runs, recorded=recorded)
        swap_in(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    width = max(len(h.id) for h in headlines)
    for h in headlines:
        print(f"{h.id:<{width}}  {h.verdict:<15} {h.combined}")
    results = [r for h in headlines for r in h.per_data]  # the W&B report and run: a section per claim and dataset
    figures = {k: out / p.name for k, p in figures.items()}
    print(f"wrote {out / 'REPORT.md'}, {out / 'claims.json'} and {len(figures)} figures")
    write_wandb_report(results, figures, out)
    if args.wandb:
        from bnrepro.report.wandb_summary import log_to_wandb

        log_to_wandb(results, figures, args.runs_dir)
        publish_if_online(args.out)


def write_wandb_report(results, figures, out: Path) -> None:
    """The W&B Report's specification beside REPORT.md; never fatal (the report stands without it)."""
    try:
        from bnrepro.report.wandb_report import write_spec

        path = write_spec(results, figures, out)
        print(f"wrote {path} (publish: python -m bnrepro.report --publish-wandb {out})")
    except Exception as error:  # noqa: BLE001
        print(f"W&B report specification skipped: {type(error).__name__}: {error}")


def publish_if_online(out: Path) -> None:
    """With --wandb and a login, save the Report now (the runs were online too); never fatal."""
    from bnrepro.tracking import wandb_mode

    if wandb_mode() != "online":
        print(f"W&B is offline: sync the runs, then publish with python -m bnrepro.report --publish-wandb {out}")
        return
    try:
        from bnrepro.report.wandb_report import publish

        publish(out)
    except Exception as error:  # noqa: BLE001
        print(f"W&B report not published: {type(error).__name__}: {error}")


if __name__ == "__main__":
    main()
