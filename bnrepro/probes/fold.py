"""C15's probe: BN folds exactly into the preceding layer for inference (the paper's section 3.1; Algorithm 2's
inference-time affine map). Registered as `fold`.

`at_end` (summary.json `end_probes`, on the trained net) folds every BN that directly follows a conv or linear
layer into it (`bnrepro.inference.fold_bn`, torch's fuse_conv_bn_eval / fuse_linear_bn_eval, on an eval-mode
copy) and runs four nets in eval mode (TF32 off) over the whole test set: the unfolded and the folded net in
fp32, and both again as float64 copies of the trained net (the float64 fold folds the float64 copy). The
difference of two outputs on an example is max_k |a_k - b_k| / max_k |ref_k| (relative to the reference's largest
logit); each number below is the largest over the test examples.
- `fold_fp64_max_rel_diff`: folded vs unfolded, both in float64. Exact arithmetic makes it 0; float64 leaves
  ~1e-15, where a wrong fold (a lost bias, the wrong eps) leaves ~1e-3. The fold itself, with fp32 set aside;
- `fold_fp32_err_unfolded`: the unfolded fp32 net vs the unfolded float64 net: fp32's own error for this net
  (it depends on the CPU's instruction set and the library's kernels: the order of a sum is not fixed);
- `fold_fp32_err_folded`: the folded fp32 net vs the same float64 reference;
- `fold_fp32_ratio`: `fold_fp32_err_folded` / `fold_fp32_err_unfolded` (the denominator at least fp32's epsilon,
  the finest error an fp32 output can show): how much error the fold adds to fp32's own, on the same scale;
- `fold_max_rel_diff` (a diagnostic no rule reads): folded vs unfolded, both fp32, the number a user sees;
- `fold_disagree`: test examples whose fp32 top-1 class differs, except ties (below); `fold_ties`: examples whose
  unfolded top-two logits lie within `TIE` x the largest logit of each other (a difference of that size may
  swap them, so they are not counted as disagreements); `fold_examples`: test examples compared;
- `fold_speedup`: the unfolded net's time over the folded net's (fp32) for a pass over the first
  `TIMED_BATCHES` test batches of `EVAL_BATCH` (eval mode, no grad), each the best of `fold_repeats` alternating
  timings (at least `REPEATS`, more for a fast net: until the two have run 2 x `TIME_BUDGET_S`, at most
  `MAX_REPEATS`);
- `fold_bn`, `fold_bn_folded`: BN layers in the net and how many were folded (a BN not directly after a conv or
  linear layer, or after one whose output has another consumer, stays a BN in the folded net).
"""
from __future__ import annotations

import contextlib
import copy
import time

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from bnrepro.probes import LoopProbe, StepView, preserved, register

TIE = 1e-3  # top-two logits within TIE x the largest are a tie: a fold difference of fp32's size may swap them
# (a swap needs a gap below twice the difference, which reached 2.2e-5 on the pilots; c15_folding.py has the numbers)
FP32_EPS = float(torch.finfo(torch.float32).eps)  # the floor of fold_fp32_ratio's denominator
REPEATS = 3  # at least; more for a fast net, until both together have run 2 x TIME_BUDGET_S (at most MAX_REPEATS)
MAX_REPEATS = 30
TIME_BUDGET_S = 0.25
EVAL_BATCH = 500
TIMED_BATCHES = 4  # the test batches timed (all of digits' 360 test images; 2,000 ImageNet images)


@contextlib.contextmanager
def exact_fp32():
    """TF32 off for matmuls and convolutions (CUDA would otherwise round inputs to 10 mantissa bits)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def count_bn(model: nn.Module) -> int:
    return sum(isinstance(m, _BatchNorm) for m in model.modules())


def compare(unfolded: torch.Tensor, folded: torch.Tensor, tol: float = TIE) -> dict:
    """Per-batch counts: max relative difference, top-1 disagreements outside ties, ties, examples."""
    scale = unfolded.abs().amax(1).clamp_min(torch.finfo(unfolded.dtype).tiny)
    rel = ((folded - unfolded).abs().amax(1) / scale)
    top2 = unfolded.topk(2, dim=1).values if unfolded.shape[1] > 1 else None
    tie = ((top2[:, 0] - top2[:, 1]) <= tol * scale) if top2 is not None else torch.zeros_like(rel, dtype=torch.bool)
    differ = unfolded.argmax(1) != folded.argmax(1)
    return {"max_rel": float(rel.max()), "disagree": int((differ & ~tie).sum()), "ties": int(tie.sum()),
            "n": len(rel)}


@torch.no_grad()
def _timed(model: nn.Module, batches) -> float:
    start = time.perf_counter()
    for x in batches:
        model(x)
    if batches and batches[0].is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def fp32_ratio(err_folded: float, err_unfolded: float) -> float:
    """The folded fp32 net's error over the unfolded one's, both against float64; an unfolded error below fp32's
    epsilon (an output fp32 happens to get exactly right) counts as epsilon, so a folded error of a few ulps is no
    large ratio."""
    return err_folded / max(err_unfolded, FP32_EPS)


@torch.no_grad()
def fold_report(model: nn.Module, batches, min_repeats: int = REPEATS, tol: float = TIE,
                timed_batches: int = TIMED_BATCHES) -> dict:
    """Fold `model`'s BNs (on copies, in fp32 and in float64) and compare the nets on every input batch of
    `batches` (an iterable of tensors on the device, in its layout); the first `timed_batches` are kept and timed.
    `model` is left as it was."""
    from bnrepro.inference import fold_bn

    with preserved(model), exact_fp32():
        unfolded = copy.deepcopy(model).eval()
        folded = fold_bn(model)  # an eval-mode copy
        exact = copy.deepcopy(unfolded).double()
        exact_folded = fold_bn(exact)  # the fold done in float64 on the float64 copy
        worst = {"fp64": 0.0, "fp32_unfolded": 0.0, "fp32_folded": 0.0}
        totals = {"max_rel": 0.0, "disagree": 0, "ties": 0, "n": 0}
        kept = []
        for x in batches:
            if len(kept) < timed_batches:
                kept.append(x)
            u, f = unfolded(x).float(), folded(x).float()
            c = compare(u, f, tol)
            totals["max_rel"] = max(totals["max_rel"], c["max_rel"])
            for k in ("disagree", "ties", "n"):
                totals[k] += c[k]
            truth = exact(x.double())
            for key, got in (("fp64", exact_folded(x.double())), ("fp32_unfolded", u.double()),
                             ("fp32_folded", f.double())):
                worst[key] = max(worst[key], compare(truth, got, tol)["max_rel"])
        times = {"unfolded": [], "folded": []}
        _timed(unfolded, kept[:1]), _timed(folded, kept[:1])  # warm-up (allocator, oneDNN primitives)
        # a pass of a few ms is at the mercy of a shared machine: a fast net gets more tries (best of each)
        spent, repeats = 0.0, 0
        while repeats < min_repeats or (spent < 2 * TIME_BUDGET_S and repeats < MAX_REPEATS):
            for name, net in (("unfolded", unfolded), ("folded", folded)):  # alternating: a slow spell hits both
                times[name].append(_timed(net, kept))
                spent += times[name][-1]
            repeats += 1
    bn = count_bn(model)
    return {"fold_fp64_max_rel_diff": worst["fp64"], "fold_fp32_err_unfolded": worst["fp32_unfolded"],
            "fold_fp32_err_folded": worst["fp32_folded"],
            "fold_fp32_ratio": fp32_ratio(worst["fp32_folded"], worst["fp32_unfolded"]),
            "fold_max_rel_diff": totals["max_rel"], "fold_disagree": totals["disagree"],
            "fold_ties": totals["ties"], "fold_examples": totals["n"],
            "fold_speedup": min(times["unfolded"]) / min(times["folded"]),
            "fold_time_unfolded_s": min(times["unfolded"]), "fold_time_folded_s": min(times["folded"]),
            "fold_repeats": repeats, "fold_bn": bn, "fold_bn_folded": bn - count_bn(folded)}


class Fold(LoopProbe):
    def at_end(self, view: StepView) -> dict:
        batches = (view.speed.input(x.to(view.device, non_blocking=True))
                   for x, _ in view.data.eval_batches("test", EVAL_BATCH))
        return fold_report(view.model, batches)


@register("fold")
def fold_probes(cfg, model: nn.Module) -> list[LoopProbe]:
    return [Fold()]
