"""C15: BN folds exactly into the preceding layer for inference (the paper's section 3.1 and Algorithm 2: at
inference BN is a fixed affine map per channel, y = gamma (x - E[x]) / sqrt(Var[x] + eps) + beta, which "is
often fused with the preceding linear or convolutional layer"; standard deployment practice).

The paper gives no number: in exact arithmetic the folded layer computes the same function. Ours (c15_folding):
the `fold` probe at the end of each run folds every BN that directly follows a conv or linear layer on a copy of
the trained net and compares both over the whole test set in fp32 (bnrepro/probes/fold.py). Our own benchmark
(results/bench/fold.md, make bench) measured the speed: ResNet-50 1.10x, BN-Inception 1.01x at batch 8 on a CPU.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from bnrepro.probes.fold import TOL
from bnrepro.report import plots as P
from bnrepro.report import stats
from bnrepro.report.judging import Claim, Judged, Missing
from bnrepro.report.panels import bar
from bnrepro.report.rules import CORE, PRECONDITION, SUPPORT, Rule, Test
from bnrepro.report.runs import Run
from bnrepro.report.stats import Interval
from bnrepro.schema import Group

PAPER_C15 = {"exact": True, "bench_speedup": {"ResNet-50": 1.10, "BN-Inception": 1.01},
             "bench": "results/bench/fold.md: batch 8, CPU"}
FAMILIES = {"mlp": "MLP", "resnet_cifar": "CIFAR ResNet", "resnet": "ResNet (ImageNet)",
            "inception_bn": "BN-Inception"}
SLOWER = 0.95  # "not slower": the folded net's speed-up must exceed 0.95, a 5% allowance for the timing noise of a
# shared machine (two passes of a few ms each); fixed before any run. The speed-up itself is reported.
FP32_EPS = float(np.finfo(np.float32).eps)

RULE_C15 = Rule((
    Test("folds", PRECONDITION, "every run has BN layers that fold (else there is nothing to test)",
         "the fewest BN layers folded in any run", "greater", 0.5, unit="plain",
         why="a count: 0.5 separates none from at least one"),
    Test("exact", CORE, f"folded and unfolded outputs agree to {TOL:g} relative, in fp32",
         "the largest relative difference over every test example of every run", "less", TOL, unit="relative",
         why=f"the tolerance {TOL:g} is ~{TOL / FP32_EPS:.0f}x fp32's epsilon ({FP32_EPS:.2g}): folding changes "
             "each weight by one product and the net's sums are reordered, nothing more; a worst case, not a mean, "
             "since exactness is a claim about every example"),
    Test("same_predictions", CORE, "the same top-1 prediction on every test example (except top-two ties within "
         "the tolerance)", "test examples whose prediction changed, outside ties, summed over every run", "less",
         0.5, unit="plain", why="any changed prediction outside a tie fails"),
    Test("not_slower", SUPPORT, "the folded net is not slower", "speed-up, unfolded time / folded time "
         "(geometric mean over every run)", "greater", SLOWER, unit="ratio",
         why=f"a {100 * (1 - SLOWER):g}% allowance for timing noise on a shared machine"),
), notes="Relative difference of an example: max over classes of |folded - unfolded| / max over classes of "
         "|unfolded| (its largest logit). A tie: the unfolded net's top two logits within the tolerance times its "
         "largest. Speed: one pass over the first test batches, best of 3 alternating timings each (probe fold).")


def end(run: Run) -> dict:
    return run.summary.get("end_probes") or {}


def judge_c15(runs: list[Run]) -> Judged:
    done = [r for r in runs if not r.diverged and "fold_max_rel_diff" in end(r)]
    if not done:
        raise Missing("no run with the fold probe's numbers (trainer.probes=[fold])")
    by_family: dict[str, list[Run]] = {}
    for run in done:
        by_family.setdefault(run.get("model.name"), []).append(run)
    worst = max(float(end(r)["fold_max_rel_diff"]) for r in done)
    disagree = sum(int(end(r)["fold_disagree"]) for r in done)
    fewest = min(int(end(r)["fold_bn_folded"]) for r in done)
    speed = {(r.get("model.name"), r.get("seed")): float(end(r)["fold_speedup"]) for r in done}
    n = len(done)
    point = lambda v, kind="plain": Interval("over every run", v, v, v, n, kind)  # noqa: E731
    measured = {"folds": point(float(fewest)), "exact": point(worst), "same_predictions": point(float(disagree)),
                "not_slower": stats.ratio(speed, {k: 1.0 for k in speed})}
    families = {}
    for name, rs in sorted(by_family.items(), key=lambda kv: list(FAMILIES).index(kv[0]) if kv[0] in FAMILIES else 9):
        e = [end(r) for r in rs]
        sp = {r.get("seed"): float(end(r)["fold_speedup"]) for r in rs}
        families[FAMILIES.get(name, name)] = {
            "max_rel_diff": max(float(x["fold_max_rel_diff"]) for x in e),
            "rel_diff": {str(r.get("seed")): float(end(r)["fold_max_rel_diff"]) for r in rs},
            "disagree": sum(int(x["fold_disagree"]) for x in e), "ties": sum(int(x["fold_ties"]) for x in e),
            "examples": sum(int(x["fold_examples"]) for x in e),
            "bn": max(int(x["fold_bn"]) for x in e), "bn_folded": min(int(x["fold_bn_folded"]) for x in e),
            "speedup": stats.ratio(sp, {s: 1.0 for s in sp}).to_json(), "runs": len(rs),
            # diagnostics (no test reads them): each fp32 net's own distance from the unfolded net in float64
            "fp64_err_unfolded": max((float(x["fold_fp64_err_unfolded"]) for x in e if "fold_fp64_err_unfolded" in x),
                                     default=None),
            "fp64_err_folded": max((float(x["fold_fp64_err_folded"]) for x in e if "fold_fp64_err_folded" in x),
                                   default=None)}
    numbers = {"families": families, "tolerance": TOL, "fp32_eps": FP32_EPS, "worst_rel_diff": worst,
               "disagree": disagree, "ties": sum(f["ties"] for f in families.values()),
               "examples": sum(f["examples"] for f in families.values()),
               "speedup": measured["not_slower"].to_json(), "paper": PAPER_C15}
    unfolded = {k: f["bn"] - f["bn_folded"] for k, f in families.items() if f["bn"] - f["bn_folded"]}
    text = (f"max relative difference {worst:.2g} (tolerance {TOL:g}); {disagree} changed predictions outside "
            f"{numbers['ties']} ties in {numbers['examples']} test examples; speed-up "
            f"{measured['not_slower'].fmt()} (" + ", ".join(f"{k} {f['speedup']['mean']:.2f}x"
                                                          for k, f in families.items()) + ")")
    worst_family = max(families, key=lambda k: families[k]["max_rel_diff"])
    ref = families[worst_family]["fp64_err_unfolded"]
    if ref is not None:
        text += (f"; worst family {worst_family}: the unfolded fp32 net itself is {ref:.2g} from float64 "
                 f"(folded: {families[worst_family]['fp64_err_folded']:.2g})")
    if unfolded:
        text += "; BN left unfolded: " + ", ".join(f"{k} {v}" for k, v in unfolded.items())
    return Judged(measured, numbers, text)


class Params(Group):
    """The claim's own config keys (claim_params: in its config files), checked at the door."""
    c15_model: Optional[dict[str, Any]] = None   # each family's size at the scale (depth, width, arch, width_mult)



CLAIM = Claim(
    "C15", "BN folds exactly into the preceding layer for inference", ("c15_folding",), PAPER_C15,
    "section 3.1 / Algorithm 2: at inference BN is a fixed affine map that can be fused with the preceding linear "
    "or convolutional layer, computing the same function (exact in exact arithmetic; no number given); our "
    f"benchmark of the fold: ResNet-50 {PAPER_C15['bench_speedup']['ResNet-50']:.2f}x, BN-Inception "
    f"{PAPER_C15['bench_speedup']['BN-Inception']:.2f}x ({PAPER_C15['bench']})",
    RULE_C15, ("model.name",), judge_c15)


def figure(result):
    """(a) the largest relative output difference per run, by family, against the tolerance and fp32's epsilon;
    (b) the speed-up per family; (c) predictions and BN layers folded, per family, as a table."""
    from bnrepro.report import style

    n = result.numbers
    fams = n["families"]
    fig, gs = P.frame(result, 17, 5.8, (1, 3), ratios=[1.2, 1, 1.1], test_width=1.1)
    a = fig.add_subplot(gs[0, 0])
    names = list(fams)
    for i, name in enumerate(names):
        vals = [max(v, 1e-12) for v in fams[name]["rel_diff"].values()]
        a.plot([i] * len(vals), vals, "o", color="#1f77b4", alpha=0.7,
               label="one run (max over its test examples)" if i == 0 else None)
        ref = fams[name].get("fp64_err_unfolded")
        if ref is not None:
            a.plot([i + 0.2], [max(ref, 1e-12)], marker="^", markerfacecolor="none", markeredgecolor="0.3",
                   linestyle="none", label="diagnostic: the unfolded fp32 net vs float64 (worst run)")
    a.axhline(n["tolerance"], color="black", ls="--", lw=1, label=f"tolerance {n['tolerance']:g} (the rule)")
    a.axhline(n["fp32_eps"], color="0.5", ls=":", lw=1, label=f"fp32 epsilon {n['fp32_eps']:.2g}")
    a.set_yscale("log")
    style.categories(a, [f"{k}\n(n={fams[k]['runs']})" for k in names], 14)
    a.set_ylabel("max relative difference, folded vs unfolded\n(of the example's largest logit)")
    a.set_title("(a) exactness (paper: exact in exact arithmetic)")
    style.legend(a)
    b = fig.add_subplot(gs[0, 1])
    pts = [style.dot(b, i, fams[k]["speedup"], 1.0, col="#1f77b4") for i, k in enumerate(names)]
    bench = {"ResNet (ImageNet)": "ResNet-50", "BN-Inception": "BN-Inception"}
    marked = False
    for i, k in enumerate(names):
        if k in bench:  # our benchmark's ratio (not the paper's: it gives none), a hollow grey square
            v = n["paper"]["bench_speedup"][bench[k]]
            b.plot([i + 0.25], [v], marker="s", markerfacecolor="none", markeredgecolor="0.4", linestyle="none",
                   label="make bench (fold.md, batch 8): " + ", ".join(
                       f"{m} {x:.2f}x" for m, x in n["paper"]["bench_speedup"].items()) if not marked else None)
            pts.append((i, v, v, v))
            marked = True
    b.axhline(1.0, color="black", lw=0.8)
    b.axhline(SLOWER, color="black", ls="--", lw=1, label=f"not slower: above {SLOWER:g}x")
    pts.append((0, SLOWER, SLOWER, SLOWER))
    style.categories(b, [f"{k}\n(n={fams[k]['runs']})" for k in names], 14)
    style.zoom(b, pts, "", label="speed-up, unfolded / folded time")
    b.set_title("(b) speed of the folded net (test-set pass)")
    style.legend(b)
    c = fig.add_subplot(gs[0, 2])
    c.axis("off")
    rows = [[k, f"{f['bn_folded']}/{f['bn']}", f"{f['disagree']}", f"{f['ties']}", f"{f['examples']}"]
            for k, f in fams.items()]
    table = c.table(cellText=rows, colLabels=["family", "BN folded", "changed", "ties", "examples"],
                    loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(style.FONT["tick"])
    table.auto_set_column_width(list(range(5)))
    table.scale(1, 1.4)
    c.set_title("(c) predictions over every run's test set")
    P.caption(fig, result, extra="Each family trained briefly; the fold (torch's fuse_conv_bn_eval / "
               "fuse_linear_bn_eval) is applied to a copy of the trained net in eval mode; both run in fp32 "
               "(TF32 off). Changed = top-1 differs and the top two logits are not tied within the tolerance. "
               "The paper gives no number; the grey squares are our own benchmark's ratios.")
    return fig


FIGURE = figure


# --- the W&B Report's panels (bnrepro/report/panels.py) -----------------------------------------------------------

# measured at initialization (a step-0 history row) or at the end (summary.json's end_probes, which W&B shows
# as the nested summary keys end_probes.<key>)
PANELS = [bar("folded vs unfolded: worst relative output difference", ["end_probes.fold_max_rel_diff"]),
          bar("test predictions that change when folded", ["end_probes.fold_disagree"]),
          bar("inference speed-up of the folded net (a timing)", ["end_probes.fold_speedup"])]
