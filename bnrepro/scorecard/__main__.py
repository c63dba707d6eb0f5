"""python -m bnrepro.scorecard norm=<name or dotted path> [scale=cpu] [model.<option>=<value> ...]

Scores one norm on BN's properties (bnrepro/scorecard/), adds its row to results/scorecard/<scale>/ and prints
it; `--builtin` scores every built-in norm (BUILTIN). Runs that exist (by config identity) are reused; the rest
are launched in `--streams` processes (default: the cores). Bad input gets one `error:` line and exit 2."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from bnrepro import ConfigError


def parse(argv: list[str]) -> tuple[argparse.Namespace, dict]:
    parser = argparse.ArgumentParser(prog="python -m bnrepro.scorecard", description=__doc__.split("\n")[0])
    parser.add_argument("settings", nargs="*", help="norm=NAME, scale=SCALE, model.OPTION=VALUE")
    parser.add_argument("--builtin", action="store_true", help="score every built-in norm (with its options)")
    parser.add_argument("--runs", type=Path, help="the claims' runs, reused and completed (default runs/<scale>)")
    parser.add_argument("--score-runs", type=Path, help="the norms' own runs (default runs/scorecard/<scale>)")
    parser.add_argument("--out", type=Path, help="default results/scorecard/<scale>")
    parser.add_argument("--streams", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--only", help="claims to score, comma-separated (e.g. C2,C7); default every property")
    parser.add_argument("--data", help="score on this dataset only (e.g. digits): about half the runs; each "
                        "dataset's verdict is the same as in a full scorecard, the others are not run")
    parser.add_argument("--dry-run", action="store_true", help="say what would be reused and launched, judge "
                        "what exists, write nothing")
    parser.add_argument("--extra", nargs="*", default=[], metavar="OVERRIDE",
                        help="appended to every job, the reference runs' too (a smoke run: trainer.max_steps=10 "
                             "seed=2000,2001); such runs are outside the claims' frozen designs, and the cells say so")
    parser.add_argument("--resume", action="store_true", help="with --builtin: skip the norms the scorecard in "
                        "--out already has a row for (a builtin scorecard cut short)")
    parser.add_argument("--force", action="store_true", help="replace a row even by one resting on fewer runs")
    args = parser.parse_args(argv)
    given: dict[str, str] = {}
    for item in args.settings:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ConfigError(f"{item!r} is not a setting: write key=value, e.g. norm=gn or model.norm_groups=4")
        given[key] = value
    scale = given.pop("scale", "cpu")
    norm = given.pop("norm", None)
    options = {}
    for key, value in given.items():
        if not key.startswith("model."):
            raise ConfigError(f"{key}={value}: the scorecard takes norm=, scale= and the norm's options as "
                              "model.<option>=<value> (e.g. model.norm_groups=4)")
        options[key[len("model."):]] = _value(value)
    if args.builtin == (norm is not None):
        raise ConfigError("name one norm (norm=gn, or norm=mypkg.norms.MyNorm) or give --builtin")
    from bnrepro import CONFIGS

    if not (CONFIGS / "scale" / f"{scale}.yaml").exists():
        raise ConfigError(f"scale={scale} is not a scale: use one of "
                          + ", ".join(sorted(p.stem for p in (CONFIGS / "scale").glob("*.yaml"))))
    args.scale, args.norm = scale, norm
    args.runs = args.runs or Path("runs") / scale
    args.score_runs = args.score_runs or Path("runs") / "scorecard" / scale
    args.out = args.out or Path("results") / "scorecard" / scale
    return args, options


def _value(text: str):
    import yaml

    return yaml.safe_load(text)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("WANDB_MODE", "offline")
    try:
        args, options = parse(sys.argv[1:] if argv is None else argv)
        from bnrepro.norm import Norm
        from bnrepro.scorecard import BUILTIN
        from bnrepro.scorecard.card import properties, score
        from bnrepro.scorecard.write import add, load, markdown

        only = {c.strip() for c in args.only.split(",")} if args.only else None
        todo = list(BUILTIN.items()) if args.builtin else [(args.norm, options)]
        if args.resume:
            done = load(args.out)["rows"]
            todo = [(norm, opts) for norm, opts in todo if norm not in done]
        for norm, opts in todo:
            Norm(norm, **opts)  # ConfigError before any run: not a norm, or options it does not have
        columns = {claim.id: prop.short for claim, prop in properties(only)}
        if not columns:
            raise ConfigError(f"--only {args.only}: no claim of that name has a property; the claims that do: "
                              + ", ".join(c.id for c, _ in properties()))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    status = 0
    for norm, opts in todo:
        start = time.monotonic()
        try:
            row = score(norm, opts, args.scale, args.runs, args.score_runs, args.streams, only, args.dry_run,
                        tuple(args.extra), args.data)
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        row["wall_s"] = round(time.monotonic() - start, 1)  # what scoring it took here, runs launched included
        if row["failed"]:
            status = 1
        if args.dry_run:
            print(markdown({"scale": args.scale, "properties": columns, "rows": {norm: row}}))
            continue
        try:
            card = add(args.out, args.scale, row, columns, force=args.force)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(markdown({**card, "rows": {norm: row}}).split("\n## ")[0])
        print(f"scorecard: {row['label']}: {row['launched']} runs launched, {row['reused']} reused, in "
              f"{row['wall_s'] / 60:.1f} min; "
              f"{args.out}/SCORECARD.md, scorecard.json, scorecard.png", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
