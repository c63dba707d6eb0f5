"""Portable numerics: the same floats on any x86-64 CPU, at some cost in speed.

Torch picks its CPU code paths by the instruction set the machine offers: ATen's vectorized kernels (AVX-512,
AVX2 or the baseline build), MKL's GEMM (per CPU, per vendor) and oneDNN's JIT convolutions (per ISA and per
cache size). Each path sums in its own order, so an AMD EPYC with AVX-512 and an Intel Xeon give runs that
differ in the last bits of fp32 from the first step on. With `BNREPRO_PORTABLE_NUMERICS=1` in the environment
before Python starts, bnrepro pins every one of those paths to one that exists on every x86-64 CPU:

- `ATEN_CPU_CAPABILITY=default`: ATen's baseline kernels (no runtime dispatch by ISA);
- `MKL_CBWR=COMPATIBLE`: MKL's conditional numerical reproducibility, equal results on any x86 CPU;
- oneDNN and NNPACK off: convolutions go through im2col and MKL's GEMM, so neither oneDNN's blocking by ISA
  and cache size (`ONEDNN_MAX_CPU_ISA` alone does not fix that) nor NNPACK's AVX2-only Winograd kernels (a
  40x larger fp32 error than GEMM's, measured on a 3x3 conv) decide a sum's order.

The tests run this way (tests/conftest.py), so the golden numbers recorded on one machine are the numbers of
any other, and any change to the arithmetic still moves them. Torch reads the first two variables when it
loads, so the switch must be set before anything imports torch: `pin()` runs from bnrepro/__init__.py, ahead
of every torch import in the package, and `check()` says when torch was loaded before it.
"""
from __future__ import annotations

import os
import sys

SWITCH = "BNREPRO_PORTABLE_NUMERICS"
ENV = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}


def requested() -> bool:
    return os.environ.get(SWITCH, "") not in ("", "0")


def pin() -> None:
    """With the switch on: set the environment torch reads at load, then turn oneDNN off."""
    if not requested():
        return
    if "torch" not in sys.modules:
        os.environ.update(ENV)
    import torch

    torch.backends.mkldnn.enabled = False
    torch.backends.nnpack.set_flags(False)
    check()


def check() -> None:
    """RuntimeError when the switch is on but torch was loaded with other settings (imported before bnrepro)."""
    import torch

    if requested() and (torch.backends.cpu.get_cpu_capability() != "DEFAULT" or torch.backends.mkldnn.enabled
                        or torch._C._get_nnpack_enabled() or os.environ.get("MKL_CBWR") != ENV["MKL_CBWR"]):
        raise RuntimeError(f"{SWITCH}=1 but torch was imported before bnrepro with other settings (capability "
                           f"{torch.backends.cpu.get_cpu_capability()}): set {SWITCH}=1 in the environment "
                           "before Python starts and import bnrepro before torch")


def mode() -> str:
    """'portable' or 'native': what a run's summary records beside its machine."""
    return "portable" if requested() else "native"
