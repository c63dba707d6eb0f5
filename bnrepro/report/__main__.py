"""python -m bnrepro.report RUNS_DIR --out results/<scale> [--wandb]"""
from __future__ import annotations

import argparse
from pathlib import Path

from bnrepro.report.writer import write_report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bnrepro.report", description=__doc__)
    parser.add_argument("runs_dir", type=Path, help="directory searched recursively for run dirs (summary.json)")
    parser.add_argument("--out", type=Path, default=Path("results/cpu"), help="where REPORT.md, claims.json, PNGs go")
    parser.add_argument("--wandb", action="store_true", help="also log the table and figures as one W&B run")
    args = parser.parse_args(argv)
    results, figures = write_report(args.runs_dir, args.out)
    width = max(len(r.id) for r in results)
    for r in results:
        print(f"{r.id:<{width}}  {r.verdict:<15} {r.ours}")
    print(f"wrote {args.out / 'REPORT.md'}, {args.out / 'claims.json'} and {len(figures)} figures")
    if args.wandb:
        from bnrepro.report.wandb_summary import log_to_wandb

        log_to_wandb(results, figures, args.runs_dir)


if __name__ == "__main__":
    main()
