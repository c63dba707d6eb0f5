"""C9 as an equivalence of noisy BN with BN (TOST, margin fixed in advance) at the pre-declared noise scale, the
other scales as support, and the noise's destabilizing effect as a precondition."""
from __future__ import annotations

from bnrepro.claims.c09_noisy import CORE_NOISE, MARGIN, NOISES, RULE_C9
from test_report import c9_arms, judge, sweep


def test_the_core_test_reads_one_pre_declared_scale_and_the_others_are_support():
    roles = {t.key: t.role for t in RULE_C9.tests}
    assert CORE_NOISE in NOISES and roles["as_well"] == "core"
    assert [k for k, r in roles.items() if r == "core"] == ["as_well"]
    assert all(roles[f"as_well_{x:g}"] == "support" for x in NOISES if x != CORE_NOISE)
    assert roles["destabilizes"] == "precondition"
    assert next(t for t in RULE_C9.tests if t.key == "as_well").threshold == MARGIN


def test_a_small_bn_gain_no_longer_asks_for_a_share_no_affordable_n_can_show(tmp_path):
    """The old rule asked noisy BN to keep 3/4 of BN's gain over no BN: with a gain of a point (digits) that is
    a quarter-point bar inside the seeds' noise (about 180 seeds to decide). Noisy BN 0.2 points under BN, all
    seeds: the old share measure's interval covers its bar (BN's gain here 1 point); the equivalence within +-2 points holds."""
    import numpy as np
    bn, noisy, none = [0.960, 0.962, 0.958, 0.961, 0.959], [0.957, 0.961, 0.957, 0.958, 0.958], 0.950
    sweep(tmp_path, "c9_noisy", c9_arms(bn, {x: noisy for x in NOISES}, none))
    result = judge(tmp_path, "C9")
    assert result.verdict == "reproduced", (result.deciding, result.checks)
    a = result.numbers["arms"]
    # the old measure, per seed: noisy - none - 0.75 (BN - none)
    old = [float(n - nn - 0.75 * (b - nn)) for b, n, nn in zip(
        *(list(a[k]["values"].values()) for k in ("BN", "noisy BN 0.5", "no BN")))]
    sem = np.std(old, ddof=1) / np.sqrt(len(old))
    assert abs(np.mean(old)) < 2.78 * sem  # the old 95% interval covers its bar: unclear


def test_noise_that_does_not_destabilize_is_inconclusive(tmp_path):
    """If noisy BN's distributions drift no more than BN's, the manipulation did not manipulate."""
    sweep(tmp_path, "c9_noisy", c9_arms(0.96, {x: 0.958 for x in NOISES}, 0.90, noisy_drift=0.05))
    result = judge(tmp_path, "C9")
    assert result.verdict == "inconclusive"
    assert next(c for c in result.checks if c["key"] == "destabilizes")["outcome"] != "holds"


def test_a_support_scale_that_fails_makes_it_partly(tmp_path):
    sweep(tmp_path, "c9_noisy", c9_arms(0.96, {0.25: 0.959, 0.5: 0.958, 1.0: 0.85}, 0.90))
    result = judge(tmp_path, "C9")
    assert result.verdict == "partly", (result.deciding, result.checks)
