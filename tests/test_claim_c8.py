"""C8 (issue 21): the stress setting must make EMA measurably inaccurate before precise BN is judged against it."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from bnrepro.inference import ema_distance, precise_bn
from test_report import BN, ema_distance as distances, judge, s_c8, sweep


def bn_net(mean: float, var: float) -> nn.Module:
    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    net[1].running_mean.fill_(mean)
    net[1].running_var.fill_(var)
    return net


def test_ema_distance_is_the_gaussian_w2_in_population_sds():
    pop = bn_net(1.0, 4.0)  # sd 2
    assert ema_distance(pop, pop)["mean"] == pytest.approx(0.0)
    assert ema_distance(bn_net(1.4, 4.0), pop)["mean"] == pytest.approx(0.2, rel=1e-4)  # a 0.4 shift = 0.2 sd
    assert ema_distance(bn_net(1.0, 9.0), pop)["mean"] == pytest.approx(0.5, rel=1e-4)  # sd 3 vs 2
    assert ema_distance(bn_net(1.0, 9.0), pop)["layers"] == [pytest.approx(0.5, rel=1e-4)]


def test_ema_distance_of_a_settled_net_against_precise_bn_is_small():
    """Fixed weights, EMA run long over the same data: it converges to the population statistics, so the distance
    is sampling noise; precise BN's copy sits at 0 from itself."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8))
    x = torch.randn(2000, 4) * 3 + 1
    with torch.no_grad():
        for _ in range(30):
            for batch in x.split(100):
                net(batch)
    precise = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8))
    precise.load_state_dict(net.state_dict())
    precise_bn(precise, x.split(100), 2000)
    assert ema_distance(net, precise)["mean"] < 0.05


@pytest.mark.parametrize("case", ["reproduced", "not reproduced", "inconclusive"])
def test_ema_off_is_the_precondition(tmp_path, case):
    s_c8(tmp_path, case)
    result = judge(tmp_path, "C8")
    off = next(c for c in result.checks if c["key"] == "ema_off")
    assert off["outcome"] == ("fails" if case == "inconclusive" else "holds")
    assert result.numbers["ema_distance"]["ema_stress"]["n"] == 5


def test_a_stress_that_did_not_stress_is_inconclusive_not_not_reproduced(tmp_path):
    """Issue 21: the old ema_stress left EMA, precise and batch statistics within 0.1 points of each other, and
    the verdict said 'not reproduced'. Here precise is 0.3 points below EMA under a 'stress' whose EMA is as close
    to the population statistics as the standard setting's: the old rule (precise_fixes core, no precondition)
    fails the claim; the new one says the stress did not make EMA inaccurate."""
    same = {"ema": 0.95, "precise": 0.947, "precise_alg2": 0.947, "batch": 0.95}
    sweep(tmp_path, "c8_popstats", [({**BN, "c8_setting": "ema_stress", "model.norm_momentum": 0.01},
                                     dict(final=0.95, final_eval=same, noise=0.0005, summary_extra=distances(0.012))),
                                    ({**BN, "c8_setting": "standard", "model.norm_momentum": 0.1},
                                     dict(final=0.95, final_eval=same, noise=0.0005, summary_extra=distances(0.016)))])
    result = judge(tmp_path, "C8")
    fixes = next(c for c in result.checks if c["key"] == "precise_fixes")
    assert fixes["outcome"] == "fails"  # what the old rule read as 'not reproduced'
    assert result.verdict == "inconclusive" and "ema_off" in result.deciding


def test_runs_without_the_distance_are_inconclusive(tmp_path):
    """Runs from before the measurement (no summary ema_distance) cannot show the stress worked."""
    stress = {"ema": 0.90, "precise": 0.95}
    sweep(tmp_path, "c8_popstats", [({**BN, "c8_setting": "ema_stress"}, dict(final=0.95, final_eval=stress)),
                                    ({**BN, "c8_setting": "standard"}, dict(final=0.95, final_eval=stress))])
    result = judge(tmp_path, "C8")
    assert result.verdict == "inconclusive" and "ema_off" in result.deciding
