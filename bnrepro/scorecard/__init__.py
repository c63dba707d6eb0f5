"""The scorecard: which of BN's properties does a normalization layer keep? (`python -m bnrepro.scorecard
norm=<name or dotted path>`; `make scorecard NORM=...`)

Each property comes from one claim (bnrepro/report/properties.py: a claim module's PROPERTY); the layer takes BN's
place in that claim's design and is judged by its rule and statistics (card.py), on runs found by config identity
or launched (jobs.py), after checks that it is a norm layer at all and that the property applies (checks.py). The
rows are written to results/scorecard/<scale>/ (write.py): SCORECARD.md, scorecard.json and a norm x property
grid.
"""
from __future__ import annotations

# The built-in norms the committed scorecard scores, with the options each needs on the suite's nets (every other
# option at its default). GN and EvoNorm-S0: 4 groups, since the GN paper's 32 does not divide the MLPs' 100
# units (C7's choice, configs/claims/c7_small_batch/cpu.yaml). Ghost BN: ghost batches of 4 examples, which divide
# every training batch of the suite (4, 32, 60) and make it differ from BN. Batch Renorm: its paper's schedule
# compressed to end at step 100 (C7's), since the suite's runs are far shorter than the paper's 40k-step ramp.
BUILTIN: dict[str, dict] = {
    "bn": {}, "gn": {"norm_groups": 4}, "ln": {}, "in": {}, "brn": {"brn_warmup": 100},
    "ghost_bn": {"ghost_batch": 4}, "wn_mean_only_bn": {}, "noisy_bn": {}, "frozen_bn": {},
    "frn": {}, "evonorm_s0": {"norm_groups": 4}, "evonorm_b0": {}, "rmsnorm": {},
}
