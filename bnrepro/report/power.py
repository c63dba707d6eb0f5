"""python -m bnrepro.report.power RUNS_DIR [--out FILE]: size each claim's design on pilot runs (issue 21).

For every claim, dataset and test, from the pilot runs under RUNS_DIR (any seeds: frozen designs are ignored
here, this is where they are made): the pilot's interval, the spread of the per-seed values it rests on, and the
seeds that would detect the test's smallest effect of interest (Test.effect(), a distance from the threshold)
with 80% power at that spread (stats.seeds_needed). The numbers go into each claim module's Design (`pilot`, `n`)
before the confirmation seeds run; the cap on n is the suite's time budget, said in the design."""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from bnrepro.claims import CLAIMS
from bnrepro.report.design import cell
from bnrepro.report.judging import evaluate, runs_of
from bnrepro.report.runs import load_runs
from bnrepro.report.stats import ALPHA, Interval, seeds_needed


def spread(iv) -> float | None:
    """The per-seed sd behind a t interval (of log values for a ratio); None without one."""
    if iv is None or iv.se is None or not math.isfinite(iv.se):
        return None
    return iv.se * math.sqrt(iv.n) if not iv.test.startswith("Welch") else iv.se * math.sqrt(iv.n / 2)


def rows(runs) -> list[dict]:
    out = []
    for claim in CLAIMS:
        mine = runs_of(claim, runs)
        cells = {c for design in claim.designs.values() for c in design.data}  # e.g. C7's "mnist1d/resnet_cifar"
        for data in sorted({cell(run, cells) for run in mine}):
            result = evaluate(claim, [r for r in mine if cell(r, cells) == data], data)
            measured = {c["key"]: c for c in result.checks}
            for test in claim.rule.tests:
                check = measured.get(test.key)
                iv = Interval.from_json(check["interval"]) if check and check["interval"] else None
                sd = spread(iv)
                alpha = ALPHA if test.kind == "equivalent" else ALPHA / 2
                n = seeds_needed(sd, test.effect(), alpha, paired=not (iv and iv.test.startswith("Welch"))) \
                    if sd is not None else None
                out.append({"claim": claim.id, "data": data, "test": test.key, "role": test.role,
                            "outcome": check["outcome"] if check else "-", "pilot": iv.fmt() if iv else "-",
                            "sd": sd, "effect": test.effect(), "n80": n, "verdict": result.verdict})
    return out


def markdown(table: list[dict], runs_dir: Path) -> str:
    lines = [f"# Pilot power: `python -m bnrepro.report.power {runs_dir}`", "",
             "Per test: the pilot's interval, the per-seed sd behind it (log units for ratios), the smallest effect "
             "of interest (distance from the threshold, same units) and the seeds that detect it with 80% power "
             "(none: deterministic, or no spread).", "",
             "| claim | data | test | role | pilot outcome | pilot interval | sd | effect | n for 80% power |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        sd = f"{r['sd']:.3g}" if r["sd"] is not None else "-"
        lines.append(f"| {r['claim']} | {r['data']} | {r['test']} | {r['role']} | {r['outcome']} | {r['pilot']} | "
                     f"{sd} | {r['effect']:.3g} | {r['n80'] if r['n80'] is not None else '-'} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bnrepro.report.power", description=__doc__.split("\n")[0])
    parser.add_argument("runs_dir", type=Path)
    parser.add_argument("--out", type=Path, help="also write the table (markdown) here")
    args = parser.parse_args(argv)
    if not args.runs_dir.is_dir():
        print(f"error: no runs dir {args.runs_dir}: pass the pilot's RUNS (make pilot)", file=sys.stderr)
        return 2
    text = markdown(rows(load_runs(args.runs_dir)), args.runs_dir)
    if args.out:
        args.out.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
