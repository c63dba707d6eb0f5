"""python -m bnrepro.report.readme results/<scale> [README.md]: the README's claims table, regenerated.

Writes, between the markers `<!-- claims table: results/<scale> -->` and `<!-- end of claims table -->` in the
README, the table of results/<scale>/claims.json (the headline per claim, the verdict on each dataset with its
deciding test) and the list of every claim that is not reproduced on some dataset, with what decided it and, for an
undecided one, what would decide it. Nothing is typed in: rerun it after `make reproduce`."""
from __future__ import annotations

import json
import sys
from pathlib import Path

END = "<!-- end of claims table -->"
NAMES = {"digits": "digits", "mnist1d": "MNIST-1D", "all": "runs", "resnet_cifar": "ResNet"}


def name(data: str) -> str:
    """A column's name: a dataset, or a dataset and net (C7's "mnist1d/resnet_cifar" cell)."""
    return ", ".join(NAMES.get(part, part) for part in data.split("/"))


def start_marker(results: Path) -> str:
    return f"<!-- claims table: {results.as_posix()} -->"


def cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def table(claims: dict) -> list[str]:
    datasets = list(dict.fromkeys(d for c in claims.values() for d in c["data"]))
    lines = ["| claim | headline | " + " | ".join(f"{name(d)}: verdict, ours, deciding test" for d in datasets)
             + " |", "|---|---|" + "---|" * len(datasets)]
    for cid, c in claims.items():
        cells = []
        for d in datasets:
            per = c["data"].get(d)
            if per is None or (per["verdict"] == "not run" and not per["runs"]):
                cells.append("-")
                continue
            cells.append(f"**{per['verdict']}**: {cell(per['ours'])} ({cell(per['deciding'] or per['reason'])})")
        lines.append(f"| **{cid}** {cell(c['title'])} | **{c['verdict']}** | " + " | ".join(cells) + " |")
    return lines


def undecided(claims: dict) -> list[str]:
    lines = []
    for cid, c in claims.items():
        for d, per in c["data"].items():
            if per["verdict"] in ("reproduced", "not run"):
                continue
            what = f"- **{cid} on {name(d)}: {per['verdict']}**: {cell(per['deciding'] or per['reason'])}."
            if per.get("decide"):
                what += " Would decide it: " + "; ".join(cell(x) for x in per["decide"]) + "."
            lines.append(what)
    return lines


def section(results: Path) -> str:
    claims = json.loads((results / "claims.json").read_text())
    return "\n".join([start_marker(results), *table(claims), "",
                      "Not reproduced on some dataset, or undecided, as the rules say (generated; the reasons we "
                      "believe each is so follow the table):", *undecided(claims), END])


def update(readme: Path, results: Path) -> None:
    text = readme.read_text()
    start = start_marker(results)
    if start not in text or END not in text:
        raise SystemExit(f"error: {readme} has no markers '{start}' ... '{END}': add them where the table goes")
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(END)
    readme.write_text(head + section(results) + tail)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or not (Path(argv[0]) / "claims.json").exists():
        print("error: pass a report folder with claims.json, e.g. python -m bnrepro.report.readme results/cpu",
              file=sys.stderr)
        return 2
    update(Path(argv[1]) if len(argv) > 1 else Path("README.md"), Path(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
