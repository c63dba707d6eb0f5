"""The claims as a W&B Report (wandb-workspaces): the verdict table, then one section per claim with live panels
over that claim's runs and our figure.

The report is described by a plain, deterministic specification, `wandb_report.json` beside REPORT.md: wr's
block and panel constructor arguments as JSON (`{"type": "LinePlot", "y": ["test_acc"], ...}`; a metric is a
history key string, or {"config": key} / {"summary": key}). `build_report(spec)` turns it into the
`wandb_workspaces.reports.v2.Report`; offline it is built and validated (converted to W&B's view model) with no
network; `publish(results_dir)` rebuilds it from the file, uploads our figures and saves it online.

Runs carry what the panels filter and group by (tracking.py): group = experiment, job type = arm
(bnrepro.arms.arm_of), config scale_name = scale.
"""
from __future__ import annotations

import json
import netrc
import os
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

from bnrepro.arms import arm_of
from bnrepro.claims import PANELS
from bnrepro.report.panels import DEFAULT

FORMAT = "bnrepro-wandb-report/1"
FILE = "wandb_report.json"




def panels_for(result) -> list[dict]:
    """The claim's own panels (its module's PANELS: a list, or a function of its result), else DEFAULT."""
    panels = PANELS.get(result.id, DEFAULT)
    return panels(result) if callable(panels) else panels


# --- the specification ----------------------------------------------------------------------------------

def _text(value) -> str:
    """A rule or check as one line of text (a string, or an object with .text)."""
    return " ".join(str(getattr(value, "text", value)).split())


def _check(check) -> str:
    if isinstance(check, dict):
        text, held = check.get("condition", check.get("text")), check.get("held")
    elif isinstance(check, (tuple, list)) and len(check) == 2:
        text, held = check
    else:
        text, held = check, None
    return f"{'holds' if held else 'fails' if held is not None else '-'}: {_text(text)}"


def _cell(text) -> str:
    return _text(text).replace("|", "\\|")


def runs_filter(experiment: str, scale: str | None, data: str = "") -> str:
    """A claim's runs: its experiment's W&B group, at this scale, in this cell (a dataset, or "<dataset>/<model>":
    bnrepro/report/design.py, cell)."""
    where = f"Metric('Group') == '{experiment}'"
    name, _, model = data.partition("/")
    return (where + (f" and Config('scale_name') == '{scale}'" if scale else "")
            + (f" and Config('data.name') == '{name}'" if name else "")
            + (f" and Config('model.name') == '{model}'" if model else ""))


def figures_run(scale: str | None) -> str:
    """The id of the run `publish` logs our figures to (one per project and scale, resumed on each publish)."""
    return f"bnrepro-figures-{scale or 'all'}"


def claims_table(results) -> str:
    lines = ["| claim | verdict | ours | paper | runs |", "|---|---|---|---|---|"]
    for r in results:
        on = f" on {r.data}" if r.data else ""
        lines.append(f"| **{r.id}**{on} {_cell(r.title)} | **{r.verdict}** | {_cell(r.ours)} | {_cell(r.paper)} | "
                     f"{len(r.runs)} |")
    return "\n".join(lines)


def claim_blocks(result, scale: str | None, figure: str | None) -> list[dict]:
    """One claim's section: heading, verdict and rule, the panels over its runs, our figure."""
    arms = Counter(arm_of(run.config) or "(one arm)" for run in result.runs)
    text = [f"**Verdict: {result.verdict}.** Experiment `{result.experiment}` (W&B group), {len(result.runs)} runs.",
            "", f"- Paper: {_text(result.paper)}", f"- Ours: {_text(result.ours)}", f"- Rule: {_text(result.rule)}"]
    if result.checks:
        text.append("- Reading: " + "; ".join(_check(c) for c in result.checks))
    if arms:
        text.append("- Arms (W&B job type): " + ", ".join(f"`{arm}` ({n})" for arm, n in sorted(arms.items())))
    on = f" on {result.data}" if result.data else ""
    blocks = [{"type": "H2", "text": f"{result.id}{on}: {result.title}"}, {"type": "MarkdownBlock", "text": "\n".join(text)},
              {"type": "PanelGrid",
               "runsets": [{"name": f"{result.id}: {result.experiment}", "filters": runs_filter(result.experiment, scale, result.data),
                            "groupby": ["JobType"]}],
               "panels": panels_for(result)}]
    if figure:
        blocks += [{"type": "MarkdownBlock",
                    "text": f"Our figure, with the paper's numbers beside ours: `{figure}` (beside REPORT.md), "
                            f"uploaded by the publish step as `figures/{result.slug}` of run `{figures_run(scale)}`."},
                   {"type": "PanelGrid",
                    "runsets": [{"name": "figures", "filters": f"Metric('ID') == '{figures_run(scale)}'"}],
                    "panels": [{"type": "MediaBrowser", "title": f"{result.id}{on}: our figure",
                                "media_keys": [f"figures/{result.slug}"], "num_columns": 1,
                                "layout": {"x": 0, "y": 0, "w": 24, "h": 12}}]}]
    return blocks


def report_spec(results, figures: dict, *, scale: str | None, project: str = "bnrepro",
                entity: str | None = None) -> dict:
    """The report as plain data: deterministic (no timestamps, no random ids), JSON-ready."""
    title = f"Batch Normalization claims: {scale or 'all scales'}"
    blocks = [{"type": "MarkdownBlock",
               "text": "Each claim of the Batch Normalization paper, our verdict from the runs' own logs, and live "
                       "panels over the runs (one line per arm: mean over seeds, band = standard error). "
                       "REPORT.md beside this report's specification has every number."},
              {"type": "H2", "text": "Claims and verdicts"}, {"type": "MarkdownBlock", "text": claims_table(results)}]
    for r in results:
        blocks += claim_blocks(r, scale, Path(figures[r.slug]).name if r.slug in figures else None)
    return {"format": FORMAT, "title": title, "project": project, "entity": entity, "scale": scale,
            "figures_run": figures_run(scale),
            "figures": {rid: Path(path).name for rid, path in sorted(figures.items())},
            "description": f"{len(results)} claims, {sum(len(r.runs) for r in results)} runs", "blocks": blocks}


def dumps(spec: dict) -> str:
    return json.dumps(spec, indent=1, ensure_ascii=False) + "\n"


# --- spec -> wr.Report ----------------------------------------------------------------------------------

def _metric(wr, value):
    if isinstance(value, dict) and len(value) == 1:
        (kind, name), = value.items()
        return {"config": wr.Config, "summary": wr.SummaryMetric, "metric": wr.Metric}[kind](name)
    if isinstance(value, list):
        return [_metric(wr, v) for v in value]
    return value


def _panel(wr, spec: dict):
    kwargs = {k: _metric(wr, v) for k, v in spec.items() if k not in ("type", "layout")}
    if "layout" in spec:
        kwargs["layout"] = wr.Layout(**spec["layout"])
    return getattr(wr, spec["type"])(**kwargs)


def _block(wr, spec: dict, entity: str, project: str):
    kind = spec["type"]
    if kind == "PanelGrid":
        runsets = [wr.Runset(entity=entity, project=project, **rs) for rs in spec["runsets"]]
        return wr.PanelGrid(runsets=runsets, panels=[_panel(wr, p) for p in spec["panels"]])
    return getattr(wr, kind)(**{k: v for k, v in spec.items() if k != "type"})


def build_report(spec: dict, entity: str | None = None):
    """The wr.Report the spec describes. Without an entity (offline) the runsets name no project, so
    converting it to W&B's model (`validate`) needs no network; `publish` passes the entity."""
    import wandb_workspaces.reports.v2 as wr

    if spec.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} specification (format: {spec.get('format')!r})")
    entity = entity or ""
    project = spec["project"] if entity else ""
    return wr.Report(project=spec["project"], entity=entity, title=spec["title"], description=spec["description"],
                     width="fluid", blocks=[_block(wr, b, entity, project) for b in spec["blocks"]])


def validate(report) -> dict:
    """Convert the report to W&B's view model (pydantic-validated, as save() does) and return it as JSON data."""
    return report._to_model().model_dump(by_alias=True, exclude_none=True, mode="json")


def write_spec(results, figures: dict, out: Path) -> Path:
    """Build and validate the Report for these results offline; write its specification to out/wandb_report.json."""
    runs = [run for r in results for run in r.runs]
    scales = sorted({str(s) for run in runs if (s := run.summary.get("scale") or run.get("scale_name"))})
    projects = sorted({str(run.get("logger.project")) for run in runs if run.get("logger.project")})
    entities = sorted({str(run.get("logger.entity")) for run in runs if run.get("logger.entity")})
    spec = report_spec(results, figures, scale=scales[0] if len(scales) == 1 else None,
                       project=projects[0] if len(projects) == 1 else "bnrepro",
                       entity=entities[0] if len(entities) == 1 else None)
    validate(build_report(spec))
    path = Path(out) / FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(dumps(spec))
    os.replace(tmp, path)
    return path


# --- publish --------------------------------------------------------------------------------------------

def api_key() -> str | None:
    """The W&B API key from WANDB_API_KEY or ~/.netrc (what `wandb login` writes), else None."""
    if os.environ.get("WANDB_API_KEY"):
        return os.environ["WANDB_API_KEY"]
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    try:
        auth = netrc.netrc().authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return None
    return auth[2] if auth else None


def upload_figures(spec: dict, results_dir: Path, entity: str) -> int:
    """Log our figures as images `figures/<claim>` of the run the report's media panels show."""
    import wandb

    files = {rid: results_dir / name for rid, name in spec["figures"].items() if (results_dir / name).exists()}
    if not files:
        return 0
    run = wandb.init(project=spec["project"], entity=entity, id=spec["figures_run"], resume="allow",
                     group="report", job_type="figures", name=spec["figures_run"], mode="online",
                     config={"scale_name": spec["scale"], "results_dir": str(results_dir)},
                     settings=wandb.Settings(silent=True, console="off"))
    run.log({f"figures/{rid}": wandb.Image(str(path), caption=rid) for rid, path in files.items()})
    run.finish()
    return len(files)


def publish(results_dir: str | Path, entity: str | None = None) -> int:
    """`python -m bnrepro.report --publish-wandb RESULTS_DIR`: rebuild the Report from its specification and
    save it online. Returns the exit code: 0 saved, 2 no specification or not logged in, 1 W&B failed."""
    results_dir = Path(results_dir)
    path = results_dir / FILE
    if not path.exists():
        print(f"error: no {FILE} in {results_dir}: run `python -m bnrepro.report RUNS_DIR --out {results_dir}` first",
              file=sys.stderr)
        return 2
    try:
        spec = json.loads(path.read_text())
        validate(build_report(spec))
    except (ValueError, KeyError, TypeError) as error:
        print(f"error: {path} is not a valid W&B report specification ({error}); rebuild it with "
              f"`python -m bnrepro.report RUNS_DIR --out {results_dir}`", file=sys.stderr)
        return 2
    if not api_key():
        print("error: not logged in to W&B (no WANDB_API_KEY, no ~/.netrc entry): run wandb login first",
              file=sys.stderr)
        return 2
    try:
        import wandb

        entity = entity or spec.get("entity") or wandb.Api().default_entity
        uploaded = upload_figures(spec, results_dir, entity)
        report = build_report(spec, entity=entity).save()
    except Exception as error:  # noqa: BLE001 - report it in one line; the files stand without W&B
        print(f"error: W&B publish failed ({type(error).__name__}: {error})", file=sys.stderr)
        return 1
    print(f"published {spec['title']!r} ({uploaded} figures) to {report.url}")
    return 0
