"""C1's target is Inception's plateau: the precondition that Inception stopped improving, and the suites."""
from __future__ import annotations

import pytest

from test_report import judge, s_c1


def plateau(result) -> dict:
    return next(c for c in result.checks if c.get("key") == "plateau")


@pytest.mark.parametrize("case", ["reproduced", "not reproduced", "inconclusive"])
def test_c1_suites_under_the_plateau_target(tmp_path, case):
    s_c1(tmp_path, case)
    result = judge(tmp_path, "C1")
    assert result.verdict == case, (result.reason, result.checks)
    assert plateau(result)["outcome"] == "holds", plateau(result)  # the synthetic Inception has plateaued


def test_old_rule_wrong_an_inception_still_improving_caps_the_speed_up(tmp_path):
    """The old rule took the best of an Inception still rising at the end of its budget as the target and read a
    speed-up off it (issue 21: 5/5 seeds still improving at 200 steps). Here Inception rises slowly (time
    constant ~1,000 steps over 2,000): its last quarter gains more than a point on the quarter before, so the
    target is not its plateau and no speed-up is judged: inconclusive, not reproduced or reproduced."""
    s_c1(tmp_path, "reproduced", inception_rate=0.3)
    result = judge(tmp_path, "C1")
    assert plateau(result)["outcome"] == "fails", plateau(result)
    assert result.verdict == "inconclusive", (result.reason, result.checks)
