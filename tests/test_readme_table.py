"""The README's claims table is generated from a report's claims.json (bnrepro/report/readme.py), between markers."""
from __future__ import annotations

import json

from bnrepro.report.readme import END, main


def per(verdict, ours, deciding="", decide=()):
    return {"verdict": verdict, "ours": ours, "deciding": deciding, "reason": "", "decide": list(decide),
            "runs": ["a"]}


def test_the_table_between_the_markers_is_replaced_from_claims_json(tmp_path):
    results = tmp_path / "results" / "cpu"
    results.mkdir(parents=True)
    claims = {"C2": {"title": "BN allows much higher LRs", "verdict": "partly",
                     "data": {"digits": per("reproduced", "BN x30 96.9%", "core [holds_up] holds"),
                              "mnist1d": per("inconclusive", "BN x30 60.1%", "core [beats] unclear",
                                             ["[beats] about 14 seed pairs at the observed spread"])}}}
    (results / "claims.json").write_text(json.dumps(claims))
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n<!-- claims table: {results.as_posix()} -->\nold table\n{END}\nafter\n")
    assert main([str(results), str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "old table" not in text
    assert "| **C2** BN allows much higher LRs | **partly** | **reproduced**: BN x30 96.9%" in text
    assert "- **C2 on MNIST-1D: inconclusive**: core [beats] unclear. Would decide it: [beats] about 14 seed" in text
    assert "C2 on digits" not in text  # reproduced: not in the list of what did not reproduce
    assert main([str(tmp_path / "nothing"), str(readme)]) == 2
