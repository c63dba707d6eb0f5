"""The claims report: `python -m bnrepro.report RUNS_DIR --out results/<scale>` reads run directories only.
`bnrepro.report.writer.write_report` writes it; the claims (bnrepro/claims/) are built from this package's
machinery, so this file imports nothing (the writer imports the claims)."""
