"""python -m bnrepro.report RUNS_DIR --out results/<scale> [--wandb]
python -m bnrepro.report --publish-wandb results/<scale> [--entity ENTITY]

The report never overwrites with less: no run directories under RUNS_DIR is an error (exit 2) that names the
path; the report is written into a temporary dir beside --out and swapped in only when complete; a report made
from fewer runs than the one it replaces, or from runs whose step budget is not the one their scale defines,
says so in its header, which also names the machine(s) the runs came from.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from bnrepro import ConfigError


def run_dirs(runs_dir: Path) -> list[Path]:
    return [p.parent for p in sorted(runs_dir.rglob("summary.json"))
            if not any(part.startswith(".") for part in p.relative_to(runs_dir).parts)]


def check_paths(runs_dir: Path, out: Path) -> None:
    from bnrepro.door import writable

    if not runs_dir.is_dir() or not run_dirs(runs_dir):
        raise ConfigError(f"no run directories (with a summary.json) under {runs_dir}: pass the dir the sweeps "
                          "wrote (RUNS=runs/<scale>); nothing was written")
    try:
        writable(out.absolute().parent)
        if out.exists():
            writable(out)
    except ConfigError:
        raise ConfigError(f"cannot write the report to {out}: choose another --out or make it writable; "
                          "nothing was written") from None


def machine_line(machine: dict | None) -> str:
    if not machine:
        return "not recorded"
    libs = ", ".join(f"{k} {machine[k]}" for k in ("torch", "mkl", "onednn") if machine.get(k))
    cuda = machine.get("cuda") or {}
    gpu = f", GPU {cuda.get('device')}" if cuda else ""
    return f"{machine.get('cpu')} ({machine.get('arch')}, {machine.get('isa')}){gpu}; {libs}"


def expected_steps(name: str, scale: str, arm: tuple[str, ...] = ()) -> int | None:
    """trainer.max_steps that `experiment=name scale=scale` defines for a run of the given arm (its overrides of
    the keys the experiment sweeps: C10's budget scales with the LR); None for an ad-hoc run."""
    from hydra import compose, initialize_config_dir

    from bnrepro.door import CONFIGS

    if not (CONFIGS / "experiment" / f"{name}.yaml").exists():
        return None
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return int(compose("train", overrides=[f"experiment={name}", f"scale={scale}", *arm]).trainer.max_steps)


def arm_overrides(run) -> tuple[str, ...]:
    """The run's own command-line overrides of the keys its experiment sweeps (seed aside), from Hydra's record."""
    import yaml

    from bnrepro.arms import SWEEPS

    path = run.dir / ".hydra" / "overrides.yaml"
    swept = {k for keys in SWEEPS.get(run.name, {}).values() for k in keys}
    overrides = yaml.safe_load(path.read_text()) if path.exists() else []
    return tuple(sorted(o for o in overrides or [] if o.split("=", 1)[0].lstrip("+~") in swept))


def header_notes(runs, out: Path, n_runs: int) -> list[str]:
    """Lines for the report's header: the machines, and every way this report has less than it should."""
    notes = []
    machines = sorted({machine_line(run.summary.get("machine")) for run in runs})
    notes.append(f"Runs made on: {'; '.join(machines)}." if len(machines) == 1 else
                 f"Runs made on {len(machines)} different machines: {' | '.join(machines)}.")
    off, cache = {}, {}
    for run in runs:
        name, scale, steps = run.name, run.summary.get("scale") or run.get("scale_name"), run.get("trainer.max_steps")
        key = (name, scale, arm_overrides(run))
        if key not in cache:
            try:
                cache[key] = expected_steps(*key) if name and scale else None
            except Exception:  # noqa: BLE001 - a config that no longer composes: nothing to compare against
                cache[key] = None
        if cache[key] is not None and steps is not None and int(steps) != cache[key]:
            off.setdefault(name, set()).add((int(steps), cache[key]))
    for name, pairs in sorted(off.items()):
        got = ", ".join(str(s) for s, _ in sorted(pairs))
        notes.append(f"**Warning: not the scale's step budget.** `{name}` has runs of {got} steps; its scale "
                     f"defines {next(iter(pairs))[1]}.")
    try:
        committed = json.loads((out / "claims.json").read_text())
        before = len({r for claim in committed.values() for r in claim.get("runs", [])})
    except (OSError, ValueError, AttributeError):
        before = None
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
    parser.add_argument("--out", type=Path, default=Path("results/cpu"), help="where REPORT.md, claims.json, PNGs go")
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
    try:
        check_paths(args.runs_dir, args.out)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    from bnrepro.report.runs import load_runs
    from bnrepro.report.writer import write_report

    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        runs = load_runs(args.runs_dir)
        results, figures = write_report(args.runs_dir, tmp, notes=lambda n: header_notes(runs, out, n))
        swap_in(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    width = max(len(r.id) for r in results)
    for r in results:
        print(f"{r.id:<{width}}  {r.verdict:<15} {r.ours}")
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
