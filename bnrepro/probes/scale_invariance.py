"""C14 (a)'s probe (`scale_invariance`): on the trained net, scaling a BN-ed layer's weights by a leaves the
output unchanged and scales the gradient by 1/a (the paper's section 3.3: BN((aW)u) = BN(Wu) and
dL/d(aW) = (1/a) dL/dW).

At the end of training, for every layer a scale-invariant BN follows and every a in `FACTORS`, on the last
training batch in training mode (batch statistics, where the identity holds; the running statistics of eval mode
do not scale with W): the relative change of the logits ||f(aW) - f(W)|| / ||f(W)|| and the relative error of
the gradient ratio ||a g(aW) - g(W)|| / ||g(W)||, each the largest over layers. Two settings:
- `si_*`: the identity as the paper states it, BN without eps, in float64 (eps = 1e-5 alone moves the output by
  about eps / (2 var) |1 - 1/a^2|, which is not what the claim is about; torch refuses eps = 0 in training, so
  eps is 1e-30, which float64 cannot add to any variance above 1e-14);
- `si_as_trained_*`: the net as it trains (its eps, float32), reported beside.
Passes run on a deep copy of the model inside `preserved` with the RNG reseeded before each pass (noisy BN and
dropout draw the same numbers in both), so training is untouched."""
from __future__ import annotations

import copy

import torch
from torch import nn

from bnrepro.norm.pairs import norm_inputs, scale_invariant
from bnrepro.probes import LoopProbe, StepView, preserved, register

FACTORS = (0.5, 2.0, 10.0)
EXACT_EPS = 1e-30  # "no eps": torch requires eps > 0 in training; in float64 var + 1e-30 == var for var > 1e-14


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return (torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b)).item()


def scale_check(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss, factors=FACTORS,
                dtype: torch.dtype = torch.float64, exact: bool = True) -> dict[str, float]:
    """{"out_a<a>", "grad_a<a>"} for each a (the largest over the BN-ed layers) and "out_max", "grad_max", "layers".
    exact=True: every scale-invariant BN with eps = EXACT_EPS (none). Runs on a copy; `model` is not touched."""
    net = copy.deepcopy(model).to(dtype).train()
    pairs = norm_inputs(net, scale_invariant)
    if exact:
        for _, _, bn in pairs:
            bn.eps = EXACT_EPS
    x = x.to(dtype) if x.is_floating_point() else x
    weights = [layer.weight for _, layer, _ in pairs]

    def run():
        torch.manual_seed(0)
        for p in net.parameters():
            p.grad = None
        out = net(x)
        loss(out, y).backward()
        return out.detach(), [w.grad.detach().clone() for w in weights]

    base_out, base_grads = run()
    row: dict[str, float] = {"layers": len(weights)}
    for a in factors:
        outs, grads = [0.0], [0.0]
        for i, w in enumerate(weights):
            original = w.detach().clone()
            with torch.no_grad():
                w.mul_(a)
            out, g = run()
            with torch.no_grad():
                w.copy_(original)
            outs.append(_relative(out, base_out))
            grads.append(_relative(a * g[i], base_grads[i]))
        row[f"out_a{a:g}"], row[f"grad_a{a:g}"] = max(outs), max(grads)
    row["out_max"] = max(row[f"out_a{a:g}"] for a in factors)
    row["grad_max"] = max(row[f"grad_a{a:g}"] for a in factors)
    return row


class ScaleInvariance(LoopProbe):
    def at_end(self, view: StepView) -> dict:
        with preserved(view.model):
            exact = scale_check(view.model, view.x, view.y, view.loss)
            as_trained = scale_check(view.model, view.x, view.y, view.loss, dtype=torch.float32, exact=False)
        if not exact["layers"]:
            return {}
        return {**{f"si_{k}": v for k, v in exact.items()},
                **{f"si_as_trained_{k}": v for k, v in as_trained.items() if k != "layers"}}


@register("scale_invariance")
def scale_invariance_probes(cfg, model: nn.Module) -> list[LoopProbe]:
    return [ScaleInvariance()]
