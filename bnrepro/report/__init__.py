"""The claims report: `python -m bnrepro.report RUNS_DIR --out results/<scale>` reads run directories only."""
from bnrepro.report.writer import write_report

__all__ = ["write_report"]
