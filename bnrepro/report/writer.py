"""REPORT.md, claims.json and the figures, from the run directories alone."""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from bnrepro.claims import CLAIMS, evaluate_all
from bnrepro.report.judging import Headline, Result, runs_of
from bnrepro.report.figures import draw
from bnrepro.report.rules import HOW_TO_READ, INCONCLUSIVE, NOT_RUN
from bnrepro.report.runs import load_runs

# In every report folder: marks it as the report's own, which the next report may replace whole (__main__.py),
# and records what the report was made of, which the next one may not shrink without --force.
MARKER = ".bnrepro-report"


def write_report(runs_dir: str | Path, out: str | Path, notes=None, runs=None,
                 recorded: dict | None = None) -> tuple[list[Headline], dict[str, Path]]:
    """Evaluate every claim on the runs under runs_dir (or `runs`, loaded from it); write REPORT.md, claims.json,
    PNGs and the marker (holding `recorded`, default facts(runs)) to out.

    claims.json depends only on the runs' files (run dirs relative to runs_dir, no times), so the same runs
    give the same bytes. `notes(n_runs)` returns lines for the header (the machine, warnings: __main__.py)."""
    runs_dir, out = Path(runs_dir), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = load_runs(runs_dir) if runs is None else runs
    results = evaluate_all(runs)
    figures = {r.slug: path for h in results for r in h.per_data if (path := draw(r, out)) is not None}
    claims = {h.id: relative_runs(h.to_json(), runs_dir) for h in results}
    (out / "claims.json").write_text(json.dumps(claims, indent=1, default=str) + "\n")
    text = markdown(results, figures, runs, runs_dir)
    n_runs = facts(runs)["runs"]  # every run of a claim, set aside or judged: what the marker records
    extra = notes(n_runs) if notes else []
    if extra:
        title, _, rest = text.partition("\n")
        text = "\n".join([title, "", *[line + "  " for line in extra]]) + "\n" + rest
    (out / "REPORT.md").write_text(text)
    recorded = facts(runs) if recorded is None else recorded
    (out / MARKER).write_text(json.dumps({"written_by": "bnrepro.report", **recorded}, indent=1) + "\n")
    return results, figures


def scale_of(runs) -> str:
    return ", ".join(sorted({str(s) for run in runs if (s := run.summary.get("scale") or run.get("scale"))})) or "none"


def facts(runs) -> dict:
    """What a report is made of: the run dirs its claims read (claims.json's), the claims with runs, the scale."""
    mine = [runs_of(claim, runs) for claim in CLAIMS]
    return {"runs": len({run.dir for group in mine for run in group}), "claims": sum(map(bool, mine)),
            "scale": scale_of(runs)}


def report_facts(out: Path) -> dict | None:
    """facts() of the report in out: from its marker, else (a marker added by hand to an older report) from its
    claims.json and REPORT.md's title; None where out holds no readable report."""
    try:
        marker = json.loads((out / MARKER).read_text())
        if {"runs", "claims", "scale"} <= set(marker):
            return {k: marker[k] for k in ("runs", "claims", "scale", "off_budget") if k in marker}
        claims = json.loads((out / "claims.json").read_text())
        title = (out / "REPORT.md").read_text().partition("\n")[0]
        runs = {c: {d for per in claim.get("data", {"": claim}).values() for d in per["runs"]}
                for c, claim in claims.items()}
        return {"runs": len(set().union(*runs.values())), "claims": sum(bool(r) for r in runs.values()),
                "scale": re.search(r"\(scale: (.*)\)$", title).group(1)}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def relative_runs(claim: dict, runs_dir: Path) -> dict:
    """A claim's claims.json entry with each dataset's run dirs relative to runs_dir (no machine's paths)."""
    data = {d: {**per, "runs": [_relative(r, runs_dir) for r in per["runs"]]} for d, per in claim["data"].items()}
    return {**claim, "data": data}


def _relative(run_dir: str, runs_dir: Path) -> str:
    try:
        return str(Path(run_dir).relative_to(runs_dir))
    except ValueError:
        return str(run_dir)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _check_line(c: dict) -> str:
    iv = c["interval"]
    shown = iv["text"] if iv else "not measured"
    tost = f", TOST p = {iv['p_tost']:.3f}" if iv and iv.get("p_tost") is not None else ""
    decide = f" Would decide it: {c['decide']}." if c.get("decide") else ""
    return (f"- {c['role']} [{c['key']}] **{c['outcome']}**: {c['says']}; {shown} ({iv['test'] if iv else '-'}"
            f"{tost}).{decide}")


def _data_cell(r: Result) -> str:
    return f"**{r.verdict}**: {_cell(r.ours)}" if r.verdict != NOT_RUN or r.runs else "-"


def markdown(results: list[Headline], figures: dict[str, Path], runs, runs_dir: Path) -> str:
    statuses = Counter(run.status for run in runs)
    datasets = list(dict.fromkeys(r.data for h in results for r in h.per_data))
    lines = [
        f"# Batch Normalization claims: report (scale: {scale_of(runs)})", "",
        f"Generated by `python -m bnrepro.report {runs_dir}` from {len(runs)} run directories "
        f"({', '.join(f'{n} {s}' for s, n in sorted(statuses.items())) or 'none'}). Every number below is computed "
        "from the runs' summary.json and metrics.jsonl; nothing is typed in.", "",
        "## How to read", "", HOW_TO_READ, "",
        "## Claims", "",
        "| claim | paper | " + " | ".join(f"ours on {d or 'the runs'} (mean [95% interval], n)" for d in datasets)
        + " | headline | failed runs |",
        "|---|---|" + "---|" * len(datasets) + "---|---|",
    ]
    for h in results:
        per = {r.data: r for r in h.per_data}
        cells = [_data_cell(per[d]) if d in per else "-" for d in datasets]
        lines.append(f"| **{h.id}** {_cell(h.title)} | {_cell(h.paper)} | " + " | ".join(cells)
                     + f" | **{h.verdict}** ({_cell(h.combined)}) | {h.failed_text} |")
    rules = {c.id: c.rule for c in CLAIMS}
    for h in results:
        lines += ["", f"## {h.id}: {h.title}", "", f"**Headline: {h.verdict}** ({h.combined}).", "",
                  f"- Paper: {h.paper}", f"- Design: {h.design_note}."]
        if h.design is not None and h.design.pilot:
            lines += [f"- Pilot numbers behind the design: {h.design.pilot}"]
        if h.refused:
            lines += [f"- Refused (outside the frozen design, not judged): {len(h.refused)} runs, e.g. "
                      + "; ".join(h.refused[:3])]
        lines += [f"- Rule: {h.per_data[0].rule}"]
        whys = [f"[{t.key}] {t.why}" for t in rules[h.id].tests if t.why]
        if whys:
            lines += ["- Where the thresholds come from: " + "; ".join(whys) + "."]
        for r in h.per_data:
            lines += ["", f"### {h.id} on {r.data or 'the runs'}: {r.verdict}", "",
                      f"Experiment `{r.experiment}`, {len(r.runs)} runs ({r.failed} failed, interrupted or "
                      "unreadable, left out).", "", f"- Ours: {r.ours}"]
            if r.reason:
                lines += [f"- Not judged: {r.reason}"]
            if r.checks:
                lines += ["", f"Tests (deciding: {r.deciding}):", "", *(_check_line(c) for c in r.checks)]
            if r.verdict == INCONCLUSIVE and r.decide:
                lines += ["", "What would decide it: " + "; ".join(r.decide) + "."]
            if r.slug in figures:
                lines += ["", f"![{h.id}{' on ' + r.data if r.data else ''}]({figures[r.slug].name})"]
    failed = [run for run in runs if run.status not in ("completed", "diverged")]
    if failed:
        lines += ["", "## Failed, interrupted or unreadable runs (left out of every statistic)", "",
                  *[f"- `{run.dir}` ({run.status}): {run.summary.get('error') or ''}" for run in failed]]
    return "\n".join(lines) + "\n"
