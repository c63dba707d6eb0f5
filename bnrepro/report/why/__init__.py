"""Why BN works: claims C11-C15 (the explanation debate), one module each, with the same machinery as C1-C10
(bnrepro/report/judging.py: Claim, Rule, judges returning Judged; plots.py: the figures' frame and panels, drawn
only from Result.numbers).

Each module defines its paper numbers, its Rule (thresholds fixed before any run), its judge, `CLAIM` (a
judging.Claim) and `FIGURE` (a function Result -> matplotlib Figure); they are listed here once.
"""
from __future__ import annotations

from bnrepro.report.why import decoupling, folding, init_gradients, scale_invariance, smoothness

CLAIMS: tuple = (smoothness.CLAIM, init_gradients.CLAIM, decoupling.CLAIM, scale_invariance.CLAIM, folding.CLAIM)
FIGURES: dict = {"C11": smoothness.FIGURE, "C12": init_gradients.FIGURE, "C13": decoupling.FIGURE,
                 "C14": scale_invariance.FIGURE, "C15": folding.FIGURE}
