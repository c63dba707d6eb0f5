"""python -m bnrepro.report RUNS_DIR --out results/<scale> [--wandb]
python -m bnrepro.report --publish-wandb results/<scale> [--entity ENTITY]"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bnrepro.report.writer import write_report


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
    results, figures = write_report(args.runs_dir, args.out)
    width = max(len(r.id) for r in results)
    for r in results:
        print(f"{r.id:<{width}}  {r.verdict:<15} {r.ours}")
    print(f"wrote {args.out / 'REPORT.md'}, {args.out / 'claims.json'} and {len(figures)} figures")
    write_wandb_report(results, figures, args.out)
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
