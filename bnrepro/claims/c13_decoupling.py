"""C13: length-direction decoupling (Salimans & Kingma 2016; Kohler et al. 2019).

Weight normalization w = g v/||v|| decouples a weight vector's length from its direction, as BN does for the
layer before it (section 3.3 of the BN paper); with mean-only BN (subtract the batch mean, no variance division)
it matched or beat full BN on Salimans & Kingma's CIFAR-10 net. If BN's gain came from that decoupling, WN +
mean-only BN should recover it. Arms: BN, WN + mean-only BN, WN alone, no norm, each run at C2's learning-rate
multipliers x1, x5, x30 (experiment c13_decoupling) and compared at its own validation-best multiplier, with
weight norm's data-dependent init (the paper's). Comparing every arm at x30 (the design before issue 21) set BN,
which trains there, against nets that train there in some seeds only: a bimodal outcome that a t interval
summarizes badly and that says more about x30 than about decoupling."""
from __future__ import annotations


from bnrepro.report import plots as P
from bnrepro.report import style
from bnrepro.report.design import Design
from bnrepro.report.judging import (
    DIRECTION, SAME, Claim, Judged, Missing, arm_json, arms_of, by_seed, combo, diff, mean_curves, need, pick_by_val,
    score, val_score)
from bnrepro.report.panels import SCORE, TEST_ACC, line
from bnrepro.report.rules import CORE, PRECONDITION, SUPPORT, Rule, Test
from bnrepro.report.runs import Run

# Salimans & Kingma 2016, Table 1: CIFAR-10 test error (%) of their ConvPool-CNN-C variant, no data augmentation,
# Adam; the four parameterizations (checked against a summary of the paper's table; arXiv 1602.07868, section 5.1)
PAPER = {"test_error": {"WN + mean-only BN": 7.31, "BN": 8.05, "WN": 8.46, "no norm": 8.43},
         "data": "CIFAR-10, no augmentation", "net": "ConvPool-CNN-C variant (Salimans & Kingma)"}
ARMS = {"bn": "BN", "wn_mean_only_bn": "WN + mean-only BN", "wn": "WN", "none": "no norm"}
style.COLORS.update({"wn + mean-only bn": "#2ca02c", "wn": "#bcbd22", "no norm": "#7f7f7f",
                     "mean-only bn": "#17becf"})
style.EXPLAIN.update({"WN + mean-only BN": "weight normalization of the layer before + mean-only BN (subtract "
                                           "the batch mean, no variance division)",
                      "WN": "weight normalization w = g v/||v|| of the layer before, no normalization layer",
                      "no norm": "no normalization"})

CHANCE = 0.10  # both embedded datasets have 10 classes
TRAINED = CHANCE + 0.10  # a run "trains" when its score is above chance + 10 points (diverged runs score 0)
RULE = Rule((
    Test("bn_helps", PRECONDITION, "BN, at its validation-best LR, scores higher than no norm at its own",
         "score(BN) - score(no norm), each at its validation-best LR", "greater", 0.0,
         why="there must be a gain of BN's to recover; " + DIRECTION),
    Test("recovers", CORE, "WN + mean-only BN, at its validation-best LR, loses nothing against BN at its own",
         "score(WN+MOBN) - score(BN), each at its validation-best LR", "greater", -SAME,
         why=f"non-inferiority margin {100 * SAME:g} point (SAME): Salimans & Kingma's WN + mean-only BN beat BN "
             "(7.31% vs 8.05% CIFAR-10 error), so 'recovers BN's benefit' is read as no worse than BN"),
    Test("mean_only_matters", SUPPORT, "WN alone scores lower than WN + mean-only BN (each at its best LR)",
         "score(WN+MOBN) - score(WN), each at its validation-best LR", "greater", 0.0,
         why="Salimans & Kingma: WN alone 8.46% vs WN + mean-only BN 7.31% test error; " + DIRECTION),
), notes="Each arm's LR is the multiplier (x1, x5, x30, C2's grid) with the highest mean validation score over "
         "seeds; the tests compare test scores at those LRs, paired by seed (a diverged run scores 0). Weight "
         "normalization uses Salimans & Kingma's data-dependent init (section 3: g = 1/sigma and b = -mu/sigma of "
         "each pre-activation on a training batch; bnrepro/norm/weight.py), on every layer a norm follows; the "
         f"classifier is left plain in every arm. A run trains when its score is above {100 * TRAINED:g}% (chance "
         "10% + 10 points); per arm and LR the table gives the fraction of seeds that train and, where some but "
         "not all do (bimodal), the mean score of those that train.")


def trained(values: dict) -> dict:
    """The fraction of seeds that train and the mean score of those that do; bimodal when some but not all do."""
    ok = [v for v in values.values() if v > TRAINED]
    n = len(values)
    return {"trained": len(ok), "n": n, "fraction": len(ok) / n if n else None,
            "mean_trained": sum(ok) / len(ok) if ok else None, "bimodal": 0 < len(ok) < n,
            "text": f"{len(ok)}/{n} train" + (f", those {100 * sum(ok) / len(ok):.1f}%" if ok else "")}


def judge(runs: list[Run]) -> Judged:
    arms = arms_of(runs, ("model.norm", "optim.lr_mult"))
    lrs = sorted(set.intersection(*[{lr for n, lr in arms if n == norm} for norm in ARMS]) or [None],
                 key=lambda x: -1 if x is None else x)
    if lrs == [None]:
        raise Missing("no learning rate that all four arms (BN, WN + mean-only BN, WN, no norm) ran")
    # each arm at its own validation-best LR among those every arm ran (selecting on test would favour noise)
    best = {n: pick_by_val({lr: arms[(n, lr)] for lr in lrs}, f"{ARMS[n]}'s LR") for n in ARMS}
    s = {k: by_seed(rs, score) for k, rs in arms.items() if k[0] in ARMS}
    at = {n: need(s, (n, best[n]), f"{ARMS[n]} at x{best[n]:g}") for n in ARMS}
    measured = {"bn_helps": diff(at["bn"], at["none"]), "recovers": diff(at["wn_mean_only_bn"], at["bn"]),
                "mean_only_matters": diff(at["wn_mean_only_bn"], at["wn"])}
    gain = combo(at["bn"], at["none"], 1.0, -1.0)
    share = {k: (at["wn_mean_only_bn"][k] - at["none"][k]) / g for k, g in gain.items() if g > 0}
    numbers = {
        "arms": {f"{ARMS[n]}, x{lr:g}": arm_json(v) for (n, lr), v in s.items()},
        "trained": {f"{ARMS[n]}, x{lr:g}": trained(v) for (n, lr), v in s.items()},
        "val": {f"{ARMS[n]}, x{lr:g}": arm_json(by_seed(arms[(n, lr)], val_score)) for (n, lr) in s},
        "diverged": {f"{ARMS[n]}, x{lr:g}": sum(r.diverged for r in rs) for (n, lr), rs in arms.items() if n in ARMS},
        "best_lr": {ARMS[n]: lr for n, lr in best.items()}, "lrs": lrs, "trained_above": TRAINED,
        "share_of_bn_gain": arm_json(share, "plain") if share else None,
        "curves": {f"{ARMS[n]}, x{best[n]:g}": mean_curves(arms[(n, best[n])], "test_acc") for n in ARMS},
        "paper": PAPER}
    cells = [f"{ARMS[n]} x{best[n]:g} {numbers['arms'][f'{ARMS[n]}, x{best[n]:g}']['text']}"
             + (f" ({numbers['trained'][f'{ARMS[n]}, x{best[n]:g}']['text']})"
                if numbers["trained"][f"{ARMS[n]}, x{best[n]:g}"]["bimodal"] else "") for n in ARMS]
    return Judged(measured, numbers, "each at its validation-best LR: " + ", ".join(cells))


def _paper_text() -> str:
    e = PAPER["test_error"]
    return (f"Salimans & Kingma, CIFAR-10 test error ({PAPER['data']}): WN + mean-only BN {e['WN + mean-only BN']}%, "
            f"BN {e['BN']}%, WN {e['WN']}%, no norm {e['no norm']}%: weight normalization with mean-only BN "
            "matches or beats full BN, so decoupling a weight's length from its direction may be what BN buys")


PILOT_CPU = (
    "pilot seeds 1000-1004 (this design: 4 arms x LR x1, x5, x30, 1,000 steps, weight norm's data-dependent init), "
    "each arm at its validation-best LR: x1 for all four arms on both datasets. Digits: BN 97.1% [96.7, 97.5], WN + "
    "mean-only BN 97.4%, WN 97.4%, no norm 96.3%; bn_helps +0.8 points [+0.2, +1.4] (sd 0.50), recovers +0.3 "
    "[+0.1, +0.4] (sd 0.12: n=3 for a 1-point distance from the -1-point margin), mean_only_matters -0.1 "
    "[-0.4, +0.3] (sd 0.27). MNIST-1D: BN 45.4%, WN + mean-only BN 57.8%, WN 44.0%, no norm 31.7%; bn_helps +13.7 "
    "[+12.5, +14.9] (sd 0.96), recovers +12.5 [+10.6, +14.3] (sd 1.5: n=20 for a 1-point effect, far more than "
    "needed at +12.5), mean_only_matters +13.8 (sd 2.2). Bimodal cells (some seeds above 20%): MNIST-1D BN x30 "
    "3/5 (those 30.0%), WN + mean-only BN x30 4/5 (32.5%); digits no norm x5 4/5 (89.1%): x30 on digits, the old "
    "design's point, trains 5/5 for BN and WN + mean-only BN with this init but 0/5 for WN and no norm. n=5 "
    "seeds per arm (the suite's 30-minute budget on 2 cores; the pilot asks for 3-5 on every test but MNIST-1D's "
    "recovers, which its +12.5-point mean decides at 5).")
# The design, frozen before the confirmation seeds ran (bnrepro/report/design.py): the report judges only
# confirmation runs of this config, and names the commit.
DESIGNS = {"cpu": Design(
    data=('digits', 'mnist1d'),
    config={"trainer.max_steps": 1000, "trainer.eval_every": 250, "model.wn_init": "data"},
    n=5,
    pilot=PILOT_CPU,
    commit="902df75")}


CLAIM = Claim("C13", "Length-direction decoupling (weight norm + mean-only BN) recovers BN's gain",
              ("c13_decoupling",), PAPER, _paper_text(), RULE, ("model.norm", "optim.lr_mult"), judge, designs=DESIGNS)


def figure(result):
    """(a) ours: score per LR multiplier for each arm (as C2's figure); (b) ours: test accuracy over training at
    x1 and at the largest LR; (c) the paper's CIFAR-10 test errors beside our test errors at x1."""
    from bnrepro.report.style import color, legend, paper, zoom

    n = result.numbers
    fig, gs = P.frame(result, 19, 6.4, (1, 3), ratios=[1.1, 1.1, 0.9], test_width=1.1)
    a = fig.add_subplot(gs[0, 0])
    series = P.by_norm(n["arms"], P.parse_lr)
    pts = P.lines(a, series, dodge=1.08)
    P.log_x(a, [lr for v in series.values() for lr, _ in v], "learning rate multiplier (LR x, as C2)")
    zoom(a, pts, label="ours: score, test accuracy (%)")
    P.diverged_notes(a, n["diverged"], n["arms"], 0.08, sep="\n")
    a.set_title("(a) ours (MLP): score per learning rate")
    legend(a)
    for norm, lr in n["best_lr"].items():  # each arm's validation-best LR, ringed
        cell = n["arms"].get(f"{norm}, x{lr:g}")
        if cell:
            a.plot([lr], [100 * cell["mean"]], "o", ms=13, mfc="none", mec=color(norm), mew=1.5)
    b = fig.add_subplot(gs[0, 1])
    for key, c in n["curves"].items():
        norm, lr = P.parse_lr(key)
        if c["steps"]:
            tr = n["trained"].get(key, {})
            b.plot(c["steps"], [100 * m for m in c["mean"]], color=color(norm), marker="o", markersize=3,
                   label=f"{key} ({tr.get('text', '')})")
            b.fill_between(c["steps"], [100 * v for v in c["lo"]], [100 * v for v in c["hi"]], color=color(norm),
                           alpha=0.12, lw=0)
    b.set_xlabel("training steps")
    b.set_ylim(0, 100)
    b.set_ylabel("test accuracy (%), 95% bands clipped to 0-100")
    b.set_title("(b) ours: test accuracy over training, each arm at its validation-best LR")
    legend(b)
    p = fig.add_subplot(gs[0, 2])
    names = list(PAPER["test_error"])
    pts = []
    for i, name in enumerate(names):
        y = PAPER["test_error"][name]
        paper(p, i + 0.15, y, label="paper: CIFAR-10 test error" if i == 0 else "_", markeredgecolor=color(name))
        pts.append((i + 0.15, y, y, y))
    p2 = p.twinx()
    ours = []
    for i, name in enumerate(names):
        cell = n["arms"].get(f"{name}, x{n['best_lr'][name]:g}")
        if cell:
            err = {**cell, "mean": 1 - cell["mean"], "lo": 1 - cell["hi"], "hi": 1 - cell["lo"]}
            ours.append(style.dot(p2, i - 0.15, err, col=color(name),
                                  label="ours: test error at the arm's best LR" if not ours else None))
    style.categories(p, names, 11)
    zoom(p, pts, label="paper: CIFAR-10 test error (%)")
    zoom(p2, ours, label="ours: test error (%), right axis")
    p2.grid(False)
    p.set_title("(c) test error by arm: paper (diamonds, left) and ours (dots, right)")
    handles = p.get_legend_handles_labels()
    h2 = p2.get_legend_handles_labels()
    p.legend(handles[0] + h2[0], handles[1] + h2[1], fontsize=style.FONT["legend"], loc="upper left")
    bimodal = [f"{k}: {v['text']}" for k, v in n["trained"].items() if v["bimodal"]]
    P.caption(fig, result, names, "A diverged run scores 0; rings in (a) mark each arm's validation-best LR. Paper "
              "and ours differ in data and net, so (c) gives each its own axis. A run trains when its score is above "
              f"{100 * n['trained_above']:g}%" + (". Bimodal (some seeds train): " + "; ".join(bimodal) if bimodal
                                                  else "; no arm is bimodal at any LR") + ".")
    return fig


FIGURE = figure


# --- the W&B Report's panels (bnrepro/report/panels.py) -----------------------------------------------------------

PANELS = [TEST_ACC, line("training loss vs step (a diverged run stops)", ["train_loss"]), SCORE]
