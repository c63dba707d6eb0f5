"""Verdicts that do not depend on the x86 machine (issue 21): the claims whose thresholds sit nearest float noise
(C15's fold, C14's scale identities) are measured twice in fresh interpreters, once on the machine's own code path
and once with ATen, oneDNN and MKL pinned to AVX2 (set before torch loads, so a subprocess each). The numbers may
differ; each test's outcome may not, and every number must sit at least 10x from its threshold, so a third code
path cannot flip it either."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bnrepro.claims import c14_scale_invariance as c14, c15_folding as c15
from conftest import ROOT

AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}

MEASURE = r"""
import json
import bnrepro  # noqa: F401 - before torch, as the trainer does
import torch
from torch import nn
from bnrepro.models import build_model
from bnrepro.probes.fold import fold_report
from bnrepro.probes.scale_invariance import scale_check

torch.manual_seed(0)
out = {}
for name, cfg, shape in (("mlp", {"name": "mlp", "norm": "bn", "hidden": [100, 100, 100], "act": "sigmoid"}, (64,)),
                         ("resnet_cifar", {"name": "resnet_cifar", "norm": "bn", "depth": 8, "width": 8},
                          (1, 8, 8))):
    model = build_model(cfg, shape, 10)
    model.train()
    with torch.no_grad():  # population statistics that are not the init's: a few training-mode passes
        for _ in range(5):
            model(3 * torch.randn(64, *shape) + 1)
    x = torch.randn(256, *shape)
    fold = fold_report(model, [x[:128], x[128:]], min_repeats=1)
    si = scale_check(model, x[:64], torch.randint(0, 10, (64,)), nn.functional.cross_entropy)
    out[name] = {"fp64": fold["fold_fp64_max_rel_diff"], "ratio": fold["fold_fp32_ratio"],
                 "disagree": fold["fold_disagree"], "si_out": si["out_max"], "si_grad": si["grad_max"]}
print("ISA-RESULT " + json.dumps(out))
"""


def measure(extra_env: dict) -> dict:
    # the suite's own numerics (not the tests' portable ones, tests/conftest.py): the code path the machine picks
    env = {**os.environ, **extra_env, "PYTHONPATH": str(ROOT), "BNREPRO_PORTABLE_NUMERICS": "0"}
    done = subprocess.run([sys.executable, "-c", MEASURE], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("ISA-RESULT "))
    return json.loads(line.split(" ", 1)[1])


@pytest.fixture(scope="module")
def both():
    return measure({}), measure(AVX2)


# (number, threshold, which side holds): C15's float64 fold and fp32 ratio, C14's float64 identities
BOUNDS = {"fp64": (c15.TOL64, "below"), "ratio": (c15.RATIO, "below"), "si_out": (c14.OUT_TOL, "below"),
          "si_grad": (c14.GRAD_TOL, "below")}


@pytest.mark.parametrize("key", list(BOUNDS))
def test_near_noise_numbers_keep_their_side_of_the_threshold_on_both_code_paths(both, key):
    threshold, side = BOUNDS[key]
    for family in both[0]:
        native, avx2 = both[0][family][key], both[1][family][key]
        for value in (native, avx2):
            assert (value < threshold) == (side == "below"), (family, key, native, avx2)
            assert value <= threshold / 10, (family, key, value, "within 10x of the threshold")


def test_no_prediction_changes_on_either_code_path(both):
    assert all(r["disagree"] == 0 for run in both for r in run.values())
