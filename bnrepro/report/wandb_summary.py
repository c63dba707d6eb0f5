"""The claims table and figures as one W&B summary run (mode from WANDB_MODE; offline by default)."""
from __future__ import annotations

import os
from pathlib import Path

from bnrepro.report.judging import Result


def log_to_wandb(results: list[Result], figures: dict[str, Path], runs_dir: Path) -> None:
    """Never fatal: any W&B error is printed and the report stands without it."""
    try:
        import wandb

        run = wandb.init(project="bnrepro", job_type="report", group="report", dir=str(runs_dir),
                         mode=os.environ.get("WANDB_MODE", "offline"),
                         config={"runs_dir": str(runs_dir)})
        columns = ["claim", "data", "title", "verdict", "deciding", "paper", "ours", "rule", "runs", "failed"]
        table = wandb.Table(columns=columns, data=[[r.id, r.data, r.title, r.verdict, r.deciding, r.paper, r.ours,
                                                    r.rule, len(r.runs), r.failed] for r in results])
        run.log({"claims": table, **{f"figures/{cid}": wandb.Image(str(path), caption=cid)
                                     for cid, path in figures.items()}})
        run.summary.update({f"verdict/{r.slug}": r.verdict for r in results})
        run.finish()
    except Exception as error:  # W&B is a mirror of the report, never a reason to lose it
        print(f"W&B summary run skipped: {type(error).__name__}: {error}")
