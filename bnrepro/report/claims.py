"""One verdict rule per claim, computed from the runs' own logs.

Every rule compares means over seeds and allows for run-to-run noise: "clearly higher" means the
difference of the means exceeds both a stated margin and two standard errors of that difference.
A diverged run scores 0 accuracy (it ended in NaN/inf); failed runs are left out."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from bnrepro.report.runs import Run, Stat, group, select, sort_key

REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_RUN = "reproduced", "partly", "not reproduced", "not run"
BETTER = 0.01  # "clearly higher": mean difference > max(1 point, 2 standard errors)
SAME = 0.02  # "about the same": |mean difference| <= max(2 points, 2 standard errors)
STABLER = 0.5  # "more stable": drift at most half as large
FASTER = 2.0  # "far fewer steps": at least twice as fast
SOME_FASTER = 1.25  # partly: some BN variant at least 25% faster
BN_KINDS = ("bn", "ghost_bn")


@dataclass
class Result:
    id: str
    title: str
    experiment: str
    paper: str
    rule: str
    verdict: str = NOT_RUN
    ours: str = "no runs"
    numbers: dict = field(default_factory=dict)
    checks: list[tuple[str, bool]] = field(default_factory=list)  # each condition of the rule, and whether it held
    runs: list[Run] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"title": self.title, "experiment": self.experiment, "verdict": self.verdict, "ours": self.ours,
                "paper": self.paper, "rule": self.rule, "numbers": self.numbers,
                "checks": [{"condition": text, "held": held} for text, held in self.checks],
                "runs": [str(run.dir) for run in self.runs]}


class Missing(Exception):
    """The experiment ran, but not the arms the rule compares: the claim counts as not run."""


# --- shared measures -------------------------------------------------------------------------------------

def accuracy(key: str) -> Callable[[Run], float | None]:
    """summary[key] of a run; 0 for a diverged run; None (left out) for a failed one."""
    def value(run: Run) -> float | None:
        if run.diverged:
            return 0.0
        if run.status != "completed" or run.summary.get(key) is None:
            return None
        return float(run.summary[key])
    return value


best_acc, final_acc = accuracy("best_acc"), accuracy("final_acc")


def train_test_gap(run: Run) -> float | None:
    train, test = run.summary.get("final_train_acc"), run.summary.get("final_acc")
    if run.status != "completed" or train is None or test is None:
        return None
    return float(train) - float(test)


def drift(run: Run, prefix: str = "probe_p") -> float | None:
    """Instability of the probe's distribution: the range (max - min) of its 15th, 50th and 85th
    percentiles over the evaluations after the first 10% of training, averaged over the three and
    divided by the mean spread p85 - p15 over the same evaluations (so it has no unit)."""
    series = [run.series(f"{prefix}{q}") for q in (15, 50, 85)]
    if any(len(steps) < 3 for steps, _ in series):
        return None
    start = 0.1 * max(steps.max() for steps, _ in series)
    kept = [values[steps >= start] for steps, values in series]
    n = min(len(values) for values in kept)
    if n < 2:
        return None
    kept = [values[:n] for values in kept]
    spread = float(np.mean(kept[2] - kept[0]))
    if not spread > 0:
        return None
    return float(np.mean([values.max() - values.min() for values in kept]) / spread)


def diff_noise(a: Stat, b: Stat) -> float:
    """Two standard errors of the difference of two means."""
    return 2 * math.sqrt(a.sem ** 2 + b.sem ** 2)


def clearly_above(a: Stat, b: Stat, margin: float = BETTER) -> bool:
    return a.mean - b.mean > max(margin, diff_noise(a, b))


def about_same(a: Stat, b: Stat, tol: float = SAME) -> bool:
    return abs(a.mean - b.mean) <= max(tol, diff_noise(a, b))


def need(stats: dict, key, what: str) -> Stat:
    if key not in stats:
        raise Missing(f"no runs for {what}")
    return stats[key]


def by_norm(stats: dict[tuple, Stat]) -> dict[str, Stat]:
    return {key[0]: stat for key, stat in stats.items()}


def stat_json(stat: Stat) -> dict:
    return {"mean": stat.mean, "std": stat.std, "n": stat.n, "values": list(stat.values)}


def table_json(stats: dict[tuple, Stat]) -> dict:
    return {", ".join(map(str, key)): stat_json(stat) for key, stat in stats.items()}


def verdict_of(*conditions: bool) -> str:
    """All hold: reproduced; the first (the core of the claim) holds: partly; else not reproduced."""
    if all(conditions):
        return REPRODUCED
    return PARTLY if conditions[0] else NOT_REPRODUCED


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


# --- the claims --------------------------------------------------------------------------------------------

def judge_fig1(runs: list[Run], result: Result) -> None:
    acc = by_norm(group(runs, ("model.norm",), best_acc))
    bn, none = need(acc, "bn", "model.norm=bn"), need(acc, "none", "model.norm=none")
    drifts = by_norm(group(runs, ("model.norm",), drift))
    d_bn, d_none = need(drifts, "bn", "probe (BN)"), need(drifts, "none", "probe (no BN)")
    higher, stabler = clearly_above(bn, none), d_bn.mean <= STABLER * d_none.mean
    result.verdict = REPRODUCED if higher and stabler else PARTLY if higher or stabler else NOT_REPRODUCED
    result.checks = [("BN's best accuracy is clearly higher than no-BN's", higher),
                     (f"BN's probe drift is at most {STABLER:g}x no-BN's", stabler)]
    steps_to = steps_to_table(runs)
    result.numbers = {"best_acc": {k: stat_json(v) for k, v in acc.items()},
                      "drift": {k: stat_json(v) for k, v in drifts.items()}, "steps_to": steps_to}
    result.ours = (f"best test accuracy BN {bn.fmt()} vs no BN {none.fmt()}; "
                   f"probe drift BN {d_bn.fmt(1, 2, '')} vs no BN {d_none.fmt(1, 2, '')}")


def steps_to_table(runs: list[Run]) -> dict[str, dict[str, dict]]:
    """{norm: {target: {"mean", "std", "reached", "n"}}} from summary.json steps_to."""
    table: dict[str, dict[str, dict]] = {}
    for run in runs:
        for target, steps in (run.summary.get("steps_to") or {}).items():
            cell = table.setdefault(str(run.get("model.norm")), {}).setdefault(target, {"steps": [], "n": 0})
            cell["n"] += 1
            if steps is not None and not run.diverged:
                cell["steps"].append(steps)
    for cells in table.values():
        for target, cell in cells.items():
            stat = Stat(tuple(float(s) for s in cell.pop("steps")))
            cells[target] = {"mean": stat.mean if stat.n else None, "std": stat.std, "reached": stat.n, "n": cell["n"]}
    return table


LADDER = ("Inception", "BN-Baseline", "BN-x5", "BN-x30", "BN-x5-Sigmoid")
PAPER_LADDER_STEPS = {"Inception": 31.0e6, "BN-Baseline": 13.3e6, "BN-x5": 2.1e6, "BN-x30": 2.7e6}


def judge_c1(runs: list[Run], result: Result) -> None:
    variants = {v: [r for r in runs if r.get("variant") == v] for v in LADDER}
    variants = {v: rs for v, rs in variants.items() if rs}
    if "Inception" not in variants or "BN-x5" not in variants:
        raise Missing("the ladder needs the Inception and BN-x5 variants")
    baseline = [best_acc(r) for r in variants["Inception"] if best_acc(r) is not None]
    if not baseline:
        raise Missing("no finished Inception run")
    target = min(baseline)
    rows = {}
    for v, rs in variants.items():
        steps = [r.steps_to(target) if not r.diverged else None for r in rs]
        reached = Stat(tuple(s for s in steps if s is not None))
        rows[v] = {"steps": stat_json(reached), "reached": reached.n, "n": len(rs),
                   "best_acc": stat_json(group(rs, (), best_acc).get((), Stat(()))),
                   "diverged": sum(r.diverged for r in rs)}
    base_steps = rows["Inception"]["steps"]["mean"]
    for row in rows.values():
        all_reached = row["reached"] == row["n"] and row["n"] > 0
        row["speedup"] = base_steps / row["steps"]["mean"] if all_reached and row["steps"]["mean"] > 0 else None
    x5 = rows["BN-x5"]["speedup"]
    others = [rows[v]["speedup"] for v in ("BN-Baseline", "BN-x5", "BN-x30") if v in rows]
    if x5 is not None and x5 >= FASTER:
        result.verdict = REPRODUCED
    elif any(s is not None and s >= SOME_FASTER for s in others):
        result.verdict = PARTLY
    else:
        result.verdict = NOT_REPRODUCED
    result.checks = [(f"BN-x5 reaches the target at least {FASTER:g}x faster than Inception", x5 is not None and x5 >= FASTER),
                     (f"some BN variant is at least {SOME_FASTER:g}x faster",
                      any(s is not None and s >= SOME_FASTER for s in others))]
    result.numbers = {"target": target, "ladder": rows}
    parts = [f"{v} {'not reached' if row['speedup'] is None else format(row['speedup'], '.1f') + 'x'}"
             for v, row in rows.items()]
    result.ours = (f"target {pct(target)} (lowest best accuracy of the Inception seeds), reached in "
                   f"{Stat(tuple(rows['Inception']['steps']['values'])).fmt(1, 0, ' steps')} by Inception; "
                   f"speed-up: {', '.join(parts)}")


def judge_c2(runs: list[Run], result: Result) -> None:
    acc = group(runs, ("model.norm", "optim.lr_mult"), best_acc)
    top = max((lr for _, lr in acc), default=None)
    bn_top, none_top = need(acc, ("bn", top), f"BN at x{top}"), need(acc, ("none", top), f"no BN at x{top}")
    bn_best = max((stat for (norm, _), stat in acc.items() if norm == "bn"), key=lambda s: s.mean)
    beats, holds = clearly_above(bn_top, none_top), bn_top.mean >= bn_best.mean or about_same(bn_top, bn_best)
    result.verdict = verdict_of(beats, holds)
    result.checks = [(f"(a) at x{top}, BN is clearly more accurate than no BN", beats),
                     (f"(b) at x{top}, BN is about as accurate as at its best LR", holds)]
    diverged = {f"{norm}, x{lr}": sum(r.diverged for r in runs if (r.get("model.norm"), r.get("optim.lr_mult")) == (norm, lr))
                for norm, lr in acc}
    result.numbers = {"best_acc": table_json(acc), "diverged": diverged, "top_lr_mult": top}
    result.ours = (f"at x{top}: BN {bn_top.fmt()} vs no BN {none_top.fmt()} "
                   f"({diverged[f'none, x{top}']}/{none_top.n} no-BN runs diverged); "
                   f"BN's best over LRs {bn_best.fmt()}")


def judge_c3(runs: list[Run], result: Result) -> None:
    acc = group(runs, ("model.act", "model.norm"), best_acc)
    sig_bn, sig_none = need(acc, ("sigmoid", "bn"), "sigmoid + BN"), need(acc, ("sigmoid", "none"), "sigmoid, no BN")
    relu_bn = need(acc, ("relu", "bn"), "ReLU + BN")
    trainable = clearly_above(sig_bn, sig_none)
    close = sig_bn.mean >= relu_bn.mean or about_same(sig_bn, relu_bn)
    result.verdict = verdict_of(trainable, close)
    result.checks = [("(a) with sigmoid, BN is clearly more accurate than no BN", trainable),
                     ("(b) sigmoid + BN is about as accurate as ReLU + BN", close)]
    result.numbers = {"best_acc": table_json(acc)}
    relu_none = acc.get(("relu", "none"))
    result.ours = (f"sigmoid: BN {sig_bn.fmt()} vs no BN {sig_none.fmt()}; ReLU: BN {relu_bn.fmt()}"
                   + (f", no BN {relu_none.fmt()}" if relu_none else ""))


def judge_c4(runs: list[Run], result: Result) -> None:
    drifts = by_norm(group(runs, ("model.norm",), drift))
    bn, none = need(drifts, "bn", "BN runs with a probe"), need(drifts, "none", "no-BN runs with a probe")
    ratio = bn.mean / none.mean if none.mean > 0 else math.inf
    result.verdict = REPRODUCED if ratio <= STABLER else PARTLY if ratio < 1 else NOT_REPRODUCED
    result.checks = [(f"BN's drift is at most {STABLER:g}x no-BN's", ratio <= STABLER), ("BN's drift is lower", ratio < 1)]
    result.numbers = {"drift": {k: stat_json(v) for k, v in drifts.items()}, "ratio": ratio}
    result.ours = f"probe drift BN {bn.fmt(1, 2, '')} vs no BN {none.fmt(1, 2, '')} (ratio {ratio:.2f})"


def judge_c5(runs: list[Run], result: Result) -> None:
    acc = group(runs, ("model.norm", "model.dropout"), final_acc)
    gap = group(runs, ("model.norm", "model.dropout"), train_test_gap)
    bn0, none0 = need(acc, ("bn", 0.0), "BN without dropout"), need(acc, ("none", 0.0), "no BN without dropout")
    bn_best = max((s for (n, _), s in acc.items() if n == "bn"), key=lambda s: s.mean)
    none_best = max((s for (n, _), s in acc.items() if n == "none"), key=lambda s: s.mean)
    unnecessary = not clearly_above(bn_best, bn0)  # no dropout rate clearly helps BN
    matches = not clearly_above(none_best, bn0)  # BN alone is not clearly beaten by no-BN with any dropout
    gap_bn, gap_none = need(gap, ("bn", 0.0), "BN gap"), need(gap, ("none", 0.0), "no-BN gap")
    regularizes = clearly_above(gap_none, gap_bn)
    held = sum((unnecessary, matches, regularizes))
    result.verdict = REPRODUCED if held == 3 else PARTLY if held else NOT_REPRODUCED
    result.checks = [("(a) no dropout rate clearly improves BN", unnecessary),
                     ("(b) BN without dropout is not clearly beaten by no BN with any dropout", matches),
                     ("(c) BN's train-test gap is clearly smaller than no-BN's (dropout 0)", regularizes)]
    result.numbers = {"final_acc": table_json(acc), "train_test_gap": table_json(gap)}
    result.ours = (f"no dropout: BN {bn0.fmt()} vs no BN {none0.fmt()}; best with dropout: BN {bn_best.fmt()}, "
                   f"no BN {none_best.fmt()}; train-test gap at dropout 0: BN {gap_bn.fmt()} vs no BN {gap_none.fmt()}")


INIT_KEYS = ("model.init_std", "model.init_scale")  # the MLP's init std; the conv nets' multiplier of Kaiming init


def init_key(runs: list[Run]) -> str:
    """The init key the C6 sweep varied (the MLP and the conv families name it differently)."""
    varied = [k for k in INIT_KEYS if len({repr(run.get(k)) for run in runs}) > 1]
    return varied[0] if varied else INIT_KEYS[0]


def judge_c6(runs: list[Run], result: Result) -> None:
    acc = group(runs, ("model.norm", init_key(runs)), final_acc)
    spread = {}
    for norm in ("bn", "none"):
        means = [s.mean for (n, _), s in acc.items() if n == norm]
        if len(means) < 2:
            raise Missing(f"fewer than two init scales for model.norm={norm}")
        spread[norm] = max(means) - min(means)
    if spread["bn"] <= STABLER * spread["none"] and spread["none"] > BETTER:
        result.verdict = REPRODUCED
    else:
        result.verdict = PARTLY if spread["bn"] < spread["none"] else NOT_REPRODUCED
    result.checks = [(f"BN's spread is at most {STABLER:g}x no-BN's", spread["bn"] <= STABLER * spread["none"]),
                     (f"no-BN's spread exceeds {100 * BETTER:g} points", spread["none"] > BETTER),
                     ("BN's spread is smaller", spread["bn"] < spread["none"])]
    result.numbers = {"final_acc": table_json(acc), "spread": spread, "init_key": init_key(runs)}
    result.ours = (f"spread of final accuracy over init scales: BN {100 * spread['bn']:.1f} points, "
                   f"no BN {100 * spread['none']:.1f} points")


def judge_c7(runs: list[Run], result: Result) -> None:
    error = {}
    for run in runs:
        acc = final_acc(run)
        if acc is not None:
            error.setdefault((norm_kind(run), norm_batch(run)), []).append(1 - acc)
    error = {k: Stat(tuple(v)) for k, v in error.items()}
    sizes = sorted({g for n, g in error if n == "bn" and g is not None})
    if len(sizes) < 2:
        raise Missing("BN at fewer than two normalization-batch sizes")
    small, large = sizes[0], sizes[-1]
    bn_small, bn_large = error[("bn", small)], error[("bn", large)]
    gn_runs = [s for (n, g), s in error.items() if n == "gn" and g == small]
    # GN's statistics never use the batch: if it ran at one size only, that run stands for every size
    gn_small = gn_runs[0] if gn_runs else Stat(tuple(v for (n, _), s in error.items() if n == "gn" for v in s.values))
    if not gn_small.n:
        raise Missing("no GN runs")
    degrades, gn_holds = clearly_above(bn_small, bn_large), clearly_above(bn_small, gn_small)
    result.verdict = verdict_of(degrades, gn_holds)
    result.checks = [(f"(a) BN's error is clearly higher with {small} than with {large} examples per batch", degrades),
                     (f"(b) GN's error is clearly lower than BN's at {small}", gn_holds)]
    result.numbers = {"error": {f"{n}, {g}": stat_json(s) for (n, g), s in sorted(error.items(), key=str)},
                      "sizes": sizes}
    result.ours = (f"error with {small} vs {large} examples per normalization batch: BN {bn_small.fmt()} vs "
                   f"{bn_large.fmt()}; GN at {small}: {gn_small.fmt()}")


def norm_kind(run: Run) -> str:
    """bn and ghost_bn are the same method (ghost_bn with ghost_batch 0 is plain BN)."""
    return "bn" if run.get("model.norm") in BN_KINDS else str(run.get("model.norm"))


def norm_batch(run: Run) -> int | None:
    """Examples per normalization batch: model.ghost_batch, where 0 (or unset) means the whole batch."""
    return run.get("model.ghost_batch") or run.get("trainer.batch_size")


def judge_c8(runs: list[Run], result: Result) -> None:
    settings = varying_keys(runs)
    cells_by_setting: dict[tuple, dict[str, list[float]]] = {}
    for run in runs:
        if run.status != "completed":
            continue
        setting = tuple(run.get(k) for k in settings)
        for variant, acc in (run.summary.get("final_eval") or {}).items():
            if acc is not None:
                cells_by_setting.setdefault(setting, {}).setdefault(variant, []).append(float(acc))
    rows = {", ".join(f"{k}={v}" for k, v in zip(settings, setting)) or "all": {v: Stat(tuple(a)) for v, a in cells.items()}
            for setting, cells in sorted(cells_by_setting.items(), key=lambda kv: sort_key(kv[0]))}
    if not rows or not all({"ema", "precise"} <= set(cells) for cells in rows.values()):
        raise Missing("final_eval lacks ema and precise accuracies")
    never_worse = all(not clearly_above(c["ema"], c["precise"]) for c in rows.values())
    poor_costs = any(clearly_above(c["precise"], c[v]) for c in rows.values() for v in ("ema", "batch") if v in c)
    result.verdict = verdict_of(never_worse, poor_costs)
    result.checks = [("(a) precise BN is never clearly worse than EMA", never_worse),
                     ("(b) somewhere EMA or batch statistics are clearly worse than precise BN", poor_costs)]
    result.numbers = {"final_eval": {label: {v: stat_json(s) for v, s in cells.items()} for label, cells in rows.items()}}
    result.ours = "; ".join(f"{label}: " + ", ".join(f"{v} {s.fmt()}" for v, s in cells.items())
                            for label, cells in rows.items())


def varying_keys(runs: list[Run]) -> list[str]:
    """Config keys (other than the seed and paths) whose values differ between runs: what the sweep varied."""
    keys = sorted({k for run in runs for k in run.config})
    return [k for k in keys if k != "seed" and not k.endswith(("dir", "root", "path"))
            and len({repr(run.get(k)) for run in runs}) > 1]


TRAIN_PROBE = "probe_train_p"  # percentiles seen in training mode, where noisy BN's noise is on


def judge_c9(runs: list[Run], result: Result) -> None:
    acc = by_norm(group(runs, ("model.norm",), best_acc))
    # noisy BN injects its noise in training mode only, so its drift shows in a training-mode probe
    train_probe = all(run.series(f"{TRAIN_PROBE}50")[0].size for run in runs)
    prefix = TRAIN_PROBE if train_probe else "probe_p"
    drifts = by_norm(group(runs, ("model.norm",), lambda run: drift(run, prefix)))
    bn, noisy, none = need(acc, "bn", "BN"), need(acc, "noisy_bn", "noisy BN"), need(acc, "none", "no BN")
    d_bn, d_noisy = need(drifts, "bn", "BN drift"), need(drifts, "noisy_bn", "noisy BN drift")
    as_well = noisy.mean >= bn.mean or about_same(noisy, bn)
    less_stable = d_noisy.mean * STABLER >= d_bn.mean
    helps = clearly_above(noisy, none)
    result.verdict = verdict_of(as_well, less_stable, helps)
    result.checks = [("(a) noisy BN is about as accurate as BN", as_well),
                     (f"(b) noisy BN's drift is at least {1 / STABLER:g}x BN's", less_stable),
                     ("(c) noisy BN is clearly more accurate than no BN", helps)]
    result.numbers = {"best_acc": {k: stat_json(v) for k, v in acc.items()},
                      "drift": {k: stat_json(v) for k, v in drifts.items()},
                      "probe": "training mode" if train_probe else "evaluation mode (noisy BN's noise is off)"}
    d_none = drifts.get("none")
    result.ours = (f"best accuracy BN {bn.fmt()}, noisy BN {noisy.fmt()}, no BN {none.fmt()}; "
                   f"probe drift ({result.numbers['probe']}) BN "
                   f"{d_bn.fmt(1, 2, '')}, noisy BN {d_noisy.fmt(1, 2, '')}"
                   + (f", no BN {d_none.fmt(1, 2, '')}" if d_none else ""))


def judge_c10(runs: list[Run], result: Result) -> None:
    acc = group(runs, ("model.norm", "optim.lr_mult"), best_acc)
    lrs = sorted({lr for (_, lr) in acc})
    if len(lrs) < 2:
        raise Missing("fewer than two learning rates")
    small, large = lrs[0], lrs[-1]
    pairs = {lr: (need(acc, ("bn", lr), f"BN at x{lr}"), need(acc, ("none", lr), f"no BN at x{lr}")) for lr in (small, large)}
    gap = {lr: bn.mean - none.mean for lr, (bn, none) in pairs.items()}
    little = about_same(*pairs[small])
    grows = gap[large] - gap[small] > BETTER
    result.verdict = verdict_of(little, grows)
    result.checks = [(f"(a) at x{small}, BN and no BN are about as accurate", little),
                     (f"(b) BN's advantage grows by > {100 * BETTER:g} points from x{small} to x{large}", grows)]
    result.numbers = {"best_acc": table_json(acc), "gap": {f"x{lr}": g for lr, g in gap.items()}}
    result.ours = "; ".join(f"x{lr}: BN {bn.fmt()} vs no BN {none.fmt()} (gap {100 * gap[lr]:+.1f} points)"
                            for lr, (bn, none) in pairs.items())


# --- the registry ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Claim:
    id: str
    title: str
    experiments: tuple[str, ...]  # run names it reads; the first that has runs is used
    paper: str
    rule: str
    judge: Callable[[list[Run], Result], None]


def _rule(text: str) -> str:
    return " ".join(text.split())


CLAIMS = (
    Claim("fig1", "Figure 1: BN trains faster and stabilizes the sigmoid inputs (MNIST MLP)", ("fig1",),
          "MNIST, 3x100 sigmoid MLP, 50,000 steps, batch 60: the BN net reaches higher test accuracy faster "
          "(Fig. 1a); the 15/50/85th percentiles of a last-layer sigmoid input are far more stable with BN (Fig. 1b, c)",
          _rule(f"""reproduced if BN's mean best test accuracy is clearly higher than no-BN's (difference > max({100 * BETTER:g}
          points, 2 standard errors)) and BN's probe drift is at most {STABLER:g}x no-BN's; partly if one of the two
          holds; not reproduced otherwise. Drift: range of each percentile after the first 10% of training,
          averaged over p15/p50/p85, divided by the mean spread p85 - p15."""), judge_fig1),
    Claim("C1", "BN trains in far fewer steps", ("c1_speed",),
          "ImageNet steps to 72.2% (Inception's best): Inception 31.0e6, BN-Baseline 13.3e6, BN-x5 2.1e6 (14x fewer), "
          "BN-x30 2.7e6; max accuracy 72.2 / 72.7 / 73.0 / 74.8 (BN-x30) / 69.8% (BN-x5-Sigmoid)",
          _rule(f"""target = the lowest best test accuracy among the Inception (no-BN) seeds, so every Inception seed
          reaches it; steps to target = first evaluation at or above it; speed-up = Inception's mean steps / the
          variant's mean steps (only if all its seeds reach the target). Reproduced if BN-x5's speed-up >= {FASTER:g};
          partly if BN-Baseline, BN-x5 or BN-x30 reaches >= {SOME_FASTER:g}; not reproduced otherwise."""), judge_c1),
    Claim("C2", "BN allows much higher learning rates", ("c2_lr",),
          "Inception without BN diverged at 5x the learning rate (0.0075); BN-x30 (LR 0.045) trained and reached 74.8%",
          _rule(f"""at the largest LR multiplier, (a) BN's mean best accuracy is clearly higher than no-BN's (difference >
          max({100 * BETTER:g} points, 2 s.e.); a diverged run scores 0) and (b) BN's accuracy there is within max({100 * SAME:g}
          points, 2 s.e.) of its best over all LRs (or above). Reproduced if (a) and (b); partly if (a) only; not
          reproduced otherwise."""), judge_c2),
    Claim("C3", "BN makes saturating nonlinearities trainable", ("c3_sigmoid",),
          "BN-x5-Sigmoid reaches 69.8%; Inception with sigmoid and no BN never exceeded 0.1% (ReLU Inception: 72.2%)",
          _rule(f"""(a) with sigmoid, BN's mean best accuracy is clearly higher than no-BN's (> max({100 * BETTER:g} points,
          2 s.e.)); (b) sigmoid + BN is within max({100 * SAME:g} points, 2 s.e.) of ReLU + BN (or above). Reproduced if
          (a) and (b); partly if (a) only; not reproduced otherwise."""), judge_c3),
    Claim("C4", "BN stabilizes the distribution of layer inputs", ("c4_drift", "fig1"),
          "Fig. 1(b, c): without BN the 15/50/85th percentiles of a sigmoid input move a lot over training; with BN "
          "they are much more stable",
          _rule(f"""drift = range of each probe percentile (p15, p50, p85) over the evaluations after the first 10% of
          training, averaged, divided by the mean spread p85 - p15. Reproduced if BN's mean drift <= {STABLER:g}x
          no-BN's; partly if it is lower but not that much; not reproduced otherwise. Uses the c4_drift runs, or the
          fig1 runs if c4_drift has none."""), judge_c4),
    Claim("C5", "BN regularizes and makes dropout unnecessary", ("c5_dropout",),
          "BN-x5 removes dropout with no loss of validation accuracy (section 4.2.1); BN acts as a regularizer (section 3.4)",
          _rule(f"""on final test accuracy: (a) no dropout rate clearly improves BN over dropout 0 (> max({100 * BETTER:g}
          points, 2 s.e.)); (b) BN without dropout is not clearly beaten by no-BN at any dropout rate; (c) BN's
          train-test gap (final train accuracy - test accuracy) at dropout 0 is clearly smaller than no-BN's.
          Reproduced if all three hold; partly if one or two; not reproduced if none."""), judge_c5),
    Claim("C6", "BN reduces sensitivity to initialization", ("c6_init",),
          "section 3.3: with BN, back-propagation through a layer is unaffected by the scale of its parameters, so "
          "training is less sensitive to initialization (no number given)",
          _rule(f"""spread = max - min over init scales of the mean final accuracy. Reproduced if BN's spread <=
          {STABLER:g}x no-BN's and no-BN's spread > {100 * BETTER:g} points (initialization matters without BN); partly if
          BN's spread is smaller but not that much; not reproduced otherwise."""), judge_c6),
    Claim("C7", "BN degrades with small batches; GN does not", ("c7_small_batch",),
          "GN paper, ResNet-50 ImageNet top-1 error by images per GPU 32/16/8/4/2: BN 23.6/23.7/24.8/27.3/34.7, "
          "GN 24.1/24.2/24.0/24.2/24.1; at 32: LN 25.3; Batch Renorm at 4: 26.3",
          _rule(f"""on final test error: (a) BN's error with the smallest normalization batch is clearly higher than
          with the largest (> max({100 * BETTER:g} points, 2 s.e.)); (b) GN's error at the smallest batch (GN's statistics
          do not use the batch) is clearly lower than BN's there. Reproduced if (a) and (b); partly if (a) only; not
          reproduced otherwise. BN includes ghost BN."""), judge_c7),
    Claim("C8", "Inference needs good population statistics", ("c8_popstats",),
          "Rethinking Batch in BatchNorm: EMA statistics can be inaccurate; precise BN (recomputed over ~1e3-1e4 "
          "training samples) is better and stabler; tiny batches cause train/test inconsistency",
          _rule(f"""per sweep setting, final test accuracy with EMA statistics, precise BN and test-time batch
          statistics: (a) precise BN is never clearly worse than EMA (by > max({100 * BETTER:g} points, 2 s.e.));
          (b) in at least one setting EMA or batch statistics are clearly worse than precise BN. Reproduced if (a)
          and (b); partly if (a) only; not reproduced otherwise."""), judge_c8),
    Claim("C9", "BN's gain is not from reducing covariate shift", ("c9_noisy",),
          "Santurkar et al.: noisy BN (random time-varying shift and scale after each BN) trains about as well as "
          "plain BN although its layer distributions are less stable",
          _rule(f"""(a) noisy BN's mean best accuracy is within max({100 * SAME:g} points, 2 s.e.) of BN's (or above);
          (b) noisy BN's probe drift is at least {1 / STABLER:g}x BN's (the noise did shift the distribution);
          (c) noisy BN is clearly better than no BN (> max({100 * BETTER:g} points, 2 s.e.)). Reproduced if all hold;
          partly if (a) holds; not reproduced otherwise."""), judge_c9),
    Claim("C10", "At a small learning rate BN matters little", ("c10_small_lr",),
          "Bjorck et al.: at the same small learning rate, BN and no-BN nets reach similar accuracy; BN's main benefit "
          "is that it allows much larger learning rates",
          _rule(f"""gap = BN's mean best accuracy - no-BN's, per LR multiplier. (a) at the smallest LR the two are
          within max({100 * SAME:g} points, 2 s.e.); (b) the gap at the largest LR exceeds the gap at the smallest by >
          {100 * BETTER:g} points. Reproduced if (a) and (b); partly if (a) only; not reproduced otherwise."""), judge_c10),
)


def evaluate(claim: Claim, runs: list[Run]) -> Result:
    """The claim's verdict from the runs of its experiment ("not run" if it has none or lacks an arm)."""
    result = Result(claim.id, claim.title, claim.experiments[0], claim.paper, claim.rule)
    for name in claim.experiments:
        mine = select(runs, name)
        if mine:
            result.experiment, result.runs = name, mine
            break
    if not result.runs:
        return result
    try:
        claim.judge(result.runs, result)
    except Missing as missing:
        result.verdict, result.ours = NOT_RUN, f"{len(result.runs)} runs, but {missing}"
    return result


def evaluate_all(runs: list[Run]) -> list[Result]:
    return [evaluate(claim, runs) for claim in CLAIMS]
