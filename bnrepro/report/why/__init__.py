"""Why BN works: claims C11-C15 (the explanation debate), one module each, with the same machinery as C1-C10
(bnrepro/report/claims.py: Claim, Rule, judges returning Judged; figures drawn only from Result.numbers).

Each module defines its paper numbers, its Rule (thresholds fixed before any run), its judge, `CLAIM` (a
claims.Claim) and `FIGURE` (a function Result -> matplotlib Figure); they are listed here once.
"""
from __future__ import annotations

from bnrepro.report.why import folding, init_gradients

CLAIMS: tuple = (init_gradients.CLAIM, folding.CLAIM)
FIGURES: dict = {"C12": init_gradients.FIGURE, "C15": folding.FIGURE}
