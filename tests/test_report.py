"""The report on small synthetic run directories written in the loop's shape (summary.json with `score`,
`val_score` and final_eval; metrics.jsonl with val_acc; .hydra/config.yaml): for every claim a suite that must
come out reproduced, one that must come out not reproduced and one that must come out inconclusive; the pooling
guard; failed-run counts; the files."""
from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
import pytest

from bnrepro import rundir
from bnrepro.report.writer import write_report
from bnrepro.report.__main__ import main
from bnrepro.claims import CLAIMS
from bnrepro.report.judging import evaluate, judge_claim
from bnrepro.report.rules import combine
from bnrepro.report.runs import load_runs

CLAIM_IDS = [f"C{i}" for i in range(1, 12)]
STEPS = 2000
EVAL_AT = sorted({int(s) for s in np.geomspace(10, STEPS, 30)})  # log-spaced, dense where curves move
SEEDS = (0, 1, 2, 3, 4)
K = 3  # score_k
UNIT_DRIFT = (0.5, 1.0, 1.0, 2.0)  # each unit's drift over the run's probe_drift; their geometric mean: 1


def _rng(overrides: dict, seed: int, salt: str = "") -> np.random.Generator:
    """Deterministic per-(arm, seed) noise, so every suite is the same on every machine."""
    return np.random.default_rng(zlib.crc32(f"{sorted(overrides.items())}|{seed}|{salt}".encode()))


def make_run(root: Path, name: str, seed: int, overrides: dict, final, *, rate: float = 1.0, noise: float = 0.002,
             status: str = "completed", probe_drift: float = 0.1, drift_noise: float = 0.05,
             train_acc: float | None = None, final_eval: dict | None = None, val: bool = True,
             extra: dict | None = None, scale: str = "toy", seed_offset: int = 0, summary_extra: dict | None = None
             ) -> Path:
    """One run directory as the loop writes it (rundir.write_run). Accuracy rises as final*(1-exp(-rate*t/300)), with a per-seed
    offset of sd `noise` (final may be a list: one value per seed); the probe's median moves linearly by
    probe_drift (in units of the spread 2.0) over training; the per-unit series (probe_units_p*) have UNIT_DRIFT
    units moving by those multiples of it (geometric mean: probe_drift). `extra`: more metrics keys, each one value
    for every row (a list: one value per seed), e.g. the landscape and grad_norms probes' keys. Scale "toy" has no
    frozen design (bnrepro/report/design.py), so the rules are tested on any seeds; the design's own tests use "cpu"."""
    rng = _rng(overrides, seed)
    final = final[seed] if isinstance(final, (list, tuple)) else final + noise * rng.standard_normal()
    index, seed = seed, seed + seed_offset  # per-seed lists are indexed 0..n-1 whatever the seeds' range
    rate *= 1 + 0.05 * rng.standard_normal()
    probe_drift *= 1 + drift_noise * rng.standard_normal()
    run_dir = root / name / f"{len(list((root / name).glob('*'))) if (root / name).exists() else 0}"
    config = {"seed": seed, "name": name, "claim": None, "targets": [0.5, 0.9], "scale": scale,
              "data": {"name": "digits", "val_split": 0.1 if val else 0.0, "split_seed": seed},
              "model": {"name": "mlp", "norm": "bn", "act": "sigmoid", "dropout": 0.0, "init_std": 0.1,
                        "ghost_batch": None, "hidden": [100, 100, 100]},
              "optim": {"lr": 0.1, "lr_mult": 1, "momentum": 0.9, "weight_decay": 0.0},
              "trainer": {"max_steps": STEPS, "batch_size": 60, "eval_at": EVAL_AT, "score_last_k": K,
                          "threads": 1, "device": "cpu"}}
    for dotted, value in overrides.items():
        node = config
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    steps = EVAL_AT if status != "diverged" else EVAL_AT[: len(EVAL_AT) // 3]
    rows = []
    for step in steps:
        acc = final * (1 - math.exp(-rate * step / 300))
        median = 2.0 * probe_drift * step / STEPS
        row = {"step": step, "examples": 60 * step, "train_loss": 1 - acc, "test_loss": 1 - acc, "test_acc": acc,
               "train_acc": min(1.0, acc + 0.02), "lr": 0.1, "wall_s": step / 1000, "examples_per_s": 6e4,
               "probe_p15": median - 1.0, "probe_p50": median, "probe_p85": median + 1.0,
               "probe_train_p15": median - 1.0, "probe_train_p50": median, "probe_train_p85": median + 1.0}
        for prefix in ("probe_units_p", "probe_train_units_p"):
            row.update({f"{prefix}{q}": [f * median + q / 35 - 50 / 35 for f in UNIT_DRIFT] for q in (15, 50, 85)})
        if val:
            row.update(val_acc=acc, val_loss=1 - acc)
        row.update({k: v[index] if isinstance(v, (list, tuple)) else v for k, v in (extra or {}).items()})
        rows.append(row)
    if status == "diverged":
        rows.append({**rows[-1], "step": rows[-1]["step"] + 1, "train_loss": None, "test_loss": None, "test_acc": 0.1})
    accs = [r["test_acc"] for r in rows]
    vals = [r["val_acc"] for r in rows if "val_acc" in r]
    if final_eval:
        final_eval = {k: v + noise * _rng(overrides, seed, k).standard_normal() for k, v in final_eval.items()}
    summary = {"status": status, "score": float(np.mean(accs[-K:])), "score_k": K, "final_acc": accs[-1],
               "final_train_acc": train_acc if train_acc is not None else min(1.0, accs[-1] + 0.02),
               "val_score": float(np.mean(vals[-K:])) if vals else None,
               "best_val_acc": max(vals) if vals else None, "diag_best_test_acc": max(accs),
               "steps_to": {str(t): next((r["step"] for r in rows if r.get("val_acc", r["test_acc"]) >= t), None)
                            for t in (0.5, 0.9)}, "steps_to_split": "val" if val else "test",
               "steps": rows[-1]["step"], "wall_s": 2.0, "params": 1000, "git_rev": "abc", "torch_version": "2",
               "name": name, "claim": None, "scale": scale, "world_size": 1,
               "diverged_at": rows[-1]["step"] if status == "diverged" else None, "final_eval": final_eval or {}}
    # more summary keys (a list: one value per seed), e.g. C8's ema_distance
    summary.update({k: v[index] if isinstance(v, (list, tuple)) else v for k, v in (summary_extra or {}).items()})
    if status == "failed":
        summary = {"status": "failed", "error": "RuntimeError: synthetic", "name": name}
    return rundir.write_run(run_dir, config, rows, summary)


def sweep(root: Path, name: str, arms: list[tuple[dict, dict]], seeds=SEEDS, **kw) -> None:
    for overrides, outcome in arms:
        for seed in seeds:
            make_run(root, name, seed, overrides, **outcome, **kw)


BN, NONE = {"model.norm": "bn"}, {"model.norm": "none"}
# two arms over 5 seeds whose paired difference is +3 points with a 95% interval of about [-2.5, +8.5] points:
# covers both no effect and a 1-point effect
NOISY_UP, NOISY_FLAT = [0.50, 0.56, 0.49, 0.58, 0.52], [0.50, 0.50, 0.51, 0.49, 0.50]


def scaled(f: float, final):
    return [f * x for x in final] if isinstance(final, list) else f * final


# --- per-claim suites: each returns the experiment it wrote; `case` is reproduced / not / inconclusive ------

def s_fig1(root, case):
    if case == "reproduced":
        arms = [(BN, dict(final=0.97, rate=3, probe_drift=0.05)), (NONE, dict(final=0.93, probe_drift=0.6))]
    elif case == "not reproduced":  # BN scores 4 points lower
        arms = [(BN, dict(final=0.93, rate=3, probe_drift=0.05)), (NONE, dict(final=0.97, probe_drift=0.6))]
    else:  # the seed-noise case: mean difference +4.3 points > the old 2-s.e. bar, but n=3 and the CI covers 0
        arms = [(BN, dict(final=[0.92, 0.93, 0.98], rate=3)), (NONE, dict(final=[0.90, 0.90, 0.90], rate=3))]
        sweep(root, "fig1", arms, seeds=(0, 1, 2))
        return
    sweep(root, "fig1", arms)


def s_c1(root, case, inception_rate=2.0):
    x5 = {"reproduced": dict(final=0.92, rate=8), "not reproduced": dict(final=0.85, rate=0.5),
          "inconclusive": dict(final=[0.95, 0.95, 0.95, 0.95, 0.80], rate=8)}[case]  # seed 4 never reaches it
    ladder = [("Inception", "none", 1, "relu", dict(final=0.90, rate=inception_rate)),
              ("BN-Baseline", "bn", 1, "relu", dict(final=0.91, rate=2)), ("BN-x5", "bn", 5, "relu", x5),
              ("BN-x30", "bn", 30, "relu", dict(final=0.93, rate=6)),
              ("BN-x5-Sigmoid", "bn", 5, "sigmoid", dict(final=0.85, rate=4))]
    sweep(root, "c1_speed", [({"claim_params.variant": v, "model.norm": n, "optim.lr_mult": lr, "model.act": a}, o)
                             for v, n, lr, a, o in ladder])


def s_c2(root, case):
    if case == "reproduced":
        arms = [({**BN, "optim.lr_mult": 1}, dict(final=0.96)), ({**BN, "optim.lr_mult": 30}, dict(final=0.965)),
                ({**NONE, "optim.lr_mult": 1}, dict(final=0.95)),
                ({**NONE, "optim.lr_mult": 30}, dict(final=0.5, status="diverged"))]
    elif case == "not reproduced":  # BN at x30 loses 5 points against BN at x1
        arms = [({**BN, "optim.lr_mult": 1}, dict(final=0.96)), ({**BN, "optim.lr_mult": 30}, dict(final=0.91)),
                ({**NONE, "optim.lr_mult": 30}, dict(final=0.5))]
    else:
        arms = [({**BN, "optim.lr_mult": 1}, dict(final=0.45)), ({**BN, "optim.lr_mult": 30}, dict(final=NOISY_UP)),
                ({**NONE, "optim.lr_mult": 30}, dict(final=NOISY_FLAT))]
    sweep(root, "c2_lr", arms)


def grad_norms(first, last=0.1, layers=7):
    """The grad_norms probe's keys: the first layer's norm (a list: one per seed), the others `last`."""
    return {"gradnorm_l0": first, **{f"gradnorm_l{i}": last for i in range(1, layers)}}


def s_c3(root, case):
    acc = {"reproduced": (0.95, 0.30), "not reproduced": (0.45, 0.50),
           "inconclusive": (NOISY_UP, NOISY_FLAT)}[case]  # +3 points, CI about [-2.5, +8.5]
    # gradient flow: no BN's first layer gets ~1/50 of BN's share of the last layer's gradient
    flow_bn, flow_none = grad_norms([0.05, 0.06, 0.05, 0.04, 0.05]), grad_norms([1e-3, 2e-3, 1e-3, 1e-3, 1.5e-3])
    arms = []
    for lr, f in ((1, 1.0), (5, 0.98)):  # a small grid per arm; validation picks x1
        arms += [({**BN, "model.act": "sigmoid", "optim.lr_mult": lr}, dict(final=scaled(f, acc[0]), extra=flow_bn)),
                 ({**NONE, "model.act": "sigmoid", "optim.lr_mult": lr, "model.init": "xavier"},
                  dict(final=scaled(f, acc[1]), extra=flow_none)),
                 ({**BN, "model.act": "relu", "optim.lr_mult": lr}, dict(final=f * 0.96, extra=flow_bn)),
                 ({**NONE, "model.act": "relu", "optim.lr_mult": lr}, dict(final=f * 0.94, extra=grad_norms(0.08)))]
    sweep(root, "c3_sigmoid", arms)


def s_c4(root, case):
    drifts = {"reproduced": (0.05, 0.5, 0.05), "not reproduced": (0.6, 0.3, 0.05), "inconclusive": (0.45, 0.5, 0.5)}
    d_bn, d_none, dn = drifts[case]
    sweep(root, "c4_drift", [(BN, dict(final=0.96, probe_drift=d_bn, drift_noise=dn)),
                             (NONE, dict(final=0.94, probe_drift=d_none, drift_noise=dn))])


def s_c5(root, case):
    bn = {"reproduced": (0.96, 0.955), "not reproduced": (0.93, 0.96), "inconclusive": (0.96, 0.955)}[case]
    none = (0.94, 0.94) if case == "inconclusive" else (0.90, 0.94)  # inconclusive: dropout does not help no BN
    sweep(root, "c5_dropout", [({**BN, "model.dropout": 0.0}, dict(final=bn[0])),
                               ({**BN, "model.dropout": 0.4}, dict(final=bn[1])),
                               ({**NONE, "model.dropout": 0.0}, dict(final=none[0], train_acc=1.0)),
                               ({**NONE, "model.dropout": 0.4}, dict(final=none[1]))])


def s_c6(root, case):
    table = {"reproduced": ((0.96, 0.965, 0.96), (0.5, 0.94, 0.8)),
             "not reproduced": ((0.6, 0.95, 0.9), (0.92, 0.94, 0.93)),
             "inconclusive": ((0.96, 0.965, 0.96), (0.94, 0.94, 0.94))}[case]  # init does not matter without BN
    sweep(root, "c6_init", [({**n, "model.init_std": s}, dict(final=f)) for n, fs in zip((BN, NONE), table)
                            for s, f in zip((0.01, 0.1, 1.0), fs)])


def s_c7(root, case):
    """BN at normalization batches 2, 4 and 32 (2 is flagged degenerate and not tested: 4 vs 32 is), each trained to
    its plateau (rate 20: flat over the last half of the evaluations) except in "budget", where BN at 32 is still
    rising at the end of its run (the conv net's pilot at 9,600 examples), so 4 'beats' 32 by its steps."""
    bn = {"reproduced": (0.6, 0.9, 0.95), "not reproduced": (0.96, 0.95, 0.94),
          "inconclusive": (0.3, NOISY_FLAT, NOISY_UP),  # error at 4 minus error at 32: the noisy +3 points
          "degenerate only": (0.3, 0.95, 0.95),  # only the degenerate batch of 2 is worse
          "budget": (0.9, 0.95, 0.97)}
    rates = {32: 0.5} if case == "budget" else {}
    sweep(root, "c7_small_batch", [({"model.norm": "ghost_bn", "model.ghost_batch": g},
                                    dict(final=f, rate=rates.get(g, 20)))
                                   for g, f in zip((2, 4, 32), bn[case])]
          + [({"model.norm": "gn", "model.ghost_batch": 0}, dict(final=0.94, rate=20)),  # as the sweep runs them:
             ({"model.norm": "ln", "model.ghost_batch": 0}, dict(final=0.93, rate=20))])  # once, at the whole batch


def ema_distance(mean: float) -> dict:
    """C8's summary ema_distance with a per-seed wobble (one value per seed)."""
    return {"ema_distance": [{"mean": mean * w, "layers": [mean * w] * 3} for w in (0.9, 1.1, 1.0, 0.95, 1.05)]}


def s_c8(root, case):
    """inconclusive: the stress leaves the EMA as close to the population statistics as the standard setting (the
    old ema_stress, issue 21), so the precondition ema_off fails whatever the accuracies say."""
    stress = {"ema": 0.90, "precise": 0.95, "precise_alg2": 0.95, "batch": 0.80}
    if case == "not reproduced":
        stress = {"ema": 0.95, "precise": 0.93, "precise_alg2": 0.93, "batch": 0.80}
    standard = {"ema": 0.95, "precise": 0.952, "precise_alg2": 0.952, "batch": 0.94}
    off = 0.015 if case == "inconclusive" else 0.2
    # written in the layout of runs before issue 20 (c8_setting at the top level, not in claim_params): the
    # report reads them as today's (rundir.upgrade), as it reads runs/cpu
    sweep(root, "c8_popstats", [({**BN, "c8_setting": "ema_stress", "model.norm_momentum": 0.001},
                                 dict(final=0.95, final_eval=stress, summary_extra=ema_distance(off))),
                                ({**BN, "c8_setting": "standard", "model.norm_momentum": 0.1},
                                 dict(final=0.95, final_eval=standard, summary_extra=ema_distance(0.016)))])


def c9_arms(bn, noisy, none, noisy_drift=0.3):
    """C9's arms: BN, noisy BN at each noise scale (`noisy`: {scale: final}), no BN."""
    return ([(BN, dict(final=bn, probe_drift=0.05))]
            + [({"model.norm": "noisy_bn", "model.noise_mean": x, "model.noise_std": x},
                dict(final=f, probe_drift=noisy_drift)) for x, f in noisy.items()]
            + [(NONE, dict(final=none, probe_drift=0.5))])


def s_c9(root, case):
    """reproduced: noisy BN within 0.5 points of BN at every scale (margin 2); not reproduced: 6 points below at
    the core scale; inconclusive: BN does not help, so there is nothing to explain."""
    bn, core, none = {"reproduced": (0.96, 0.955, 0.90), "not reproduced": (0.96, 0.90, 0.90),
                      "inconclusive": (0.93, 0.93, 0.93)}[case]
    sweep(root, "c9_noisy", c9_arms(bn, {0.25: bn - 0.003, 0.5: core, 1.0: bn - 0.004}, none))


def c10_arms(act: str, bn, none_small: float, small_rate: float = 10.0) -> list:
    """C10's arms for one activation: BN and no BN at x0.1, x1, x10 (no BN diverges at x10); every arm settled
    (rate 10: on its plateau by step ~150) except the small LR's at small_rate."""
    a = {"model.act": act}
    arms = [({**a, **BN, "optim.lr_mult": lr}, dict(final=f, rate=small_rate if lr == 0.1 else 10.0))
            for lr, f in zip((0.1, 1, 10), bn)]
    return arms + [({**a, **NONE, "optim.lr_mult": 0.1}, dict(final=none_small, rate=small_rate)),
                   ({**a, **NONE, "optim.lr_mult": 1}, dict(final=0.95, rate=10.0)),
                   ({**a, **NONE, "optim.lr_mult": 10}, dict(final=0.5, status="diverged"))]


def s_c10(root, case):
    """The sigmoid and the ReLU net. inconclusive: the small LR is still climbing (rate 0.3) on the ReLU net."""
    bn = {"reproduced": (0.93, 0.96, 0.97), "not reproduced": (0.93, 0.96, 0.97), "inconclusive": (0.93, 0.96, 0.97)}
    none_small = 0.88 if case == "not reproduced" else 0.928  # not reproduced: a 5-point gap at the small LR
    arms = c10_arms("sigmoid", bn[case], none_small)
    arms += c10_arms("relu", bn[case], none_small, small_rate=0.3 if case == "inconclusive" else 10.0)
    sweep(root, "c10_small_lr", arms)


def landscape(loss_range, grad_change, beta):
    """The landscape probe's keys (each one value, or a list with one per seed)."""
    return {"landscape_loss_range": loss_range, "landscape_grad_change": grad_change, "landscape_beta": beta,
            "landscape_grad_norm": 1.0}


def s_c11(root, case):
    wobble = [0.8, 1.2, 1.0, 1.1, 0.9]  # per-seed factors
    rough = landscape([0.5 * w for w in wobble], [2.0 * w for w in wobble], [10.0 * w for w in wobble])
    smooth = landscape(*([f * w for w in wobble[::-1]] for f in (0.05, 0.2, 1.0)))
    if case == "reproduced":  # BN 10x smoother in all three
        arms = [(BN, dict(final=0.97, extra=smooth)), (NONE, dict(final=0.95, extra=rough))]
    elif case == "not reproduced":  # BN rougher
        arms = [(BN, dict(final=0.97, extra=rough)), (NONE, dict(final=0.95, extra=smooth))]
    else:  # ratios about 1 with seed noise: the intervals cover 1
        same = landscape(*([f * w for w in wobble[::-1]] for f in (0.5, 2.0, 10.0)))
        arms = [(BN, dict(final=0.97, extra=same)), (NONE, dict(final=0.95, extra=rough))]
    sweep(root, "c11_smoothness", arms)


def s_c13(root, case):
    """BN, WN + mean-only BN, WN, no norm at x1, x5, x30, each compared at its validation-best LR. not
    reproduced: WN + mean-only BN's best is 3.5 points below BN's; inconclusive: BN does not beat no norm at
    their best LRs (no gain to recover)."""
    mob = {"reproduced": 0.975, "not reproduced": 0.94, "inconclusive": 0.975}[case]
    bn = (0.97, 0.975, 0.96) if case != "inconclusive" else (0.96, 0.96, 0.955)
    finals = {"bn": bn, "wn_mean_only_bn": (mob, mob - 0.005, 0.1), "wn": (0.96, 0.95, 0.3),
              "none": (0.96, 0.95, 0.1)}
    arms = [({"model.norm": n, "optim.lr_mult": lr}, dict(final=f)) for n, fs in finals.items()
            for lr, f in zip((1, 5, 30), fs)]
    sweep(root, "c13_decoupling", arms)


def s_c14(root, case, match_final=0.97, match_norm=0.75):
    """The BN net with and without weight decay and the matched arm (no weight decay, each BN-ed layer held at
    `match_norm` x its initial norm, scoring `match_final`), the weight_norms series (a step-0 row, then each
    evaluation) and the scale_invariance end probes. not reproduced: without weight decay the weight norms shrink;
    inconclusive: they go up in some seeds and down in others. (A broken identity, the output moving when a layer
    is scaled, fails a precondition: test_c14_a_broken_identity_is_a_broken_implementation; the matched arm:
    tests/test_claim_c14.py.)"""
    for arm in ("no_wd", "wd", "matched"):
        wd = 0.005 if arm == "wd" else 0
        for seed in SEEDS:
            overrides = {"optim.weight_decay": wd, **({"optim.fixed_norm": [0.75] * 3} if arm == "matched" else {})}
            run_dir = make_run(root, "c14_scale_invariance", seed, overrides,
                               final=match_final if arm == "matched" else 0.97)
            rng = _rng({"optim.weight_decay": wd}, seed, "wnorm")
            rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
            rows.insert(0, {"step": 0})
            for i in range(3):
                start = 8.0 + rng.standard_normal()
                grow = {"reproduced": 1.15, "not reproduced": 0.85}.get(case, 1.0 + 0.1 * rng.standard_normal())
                end = start * (grow if arm == "no_wd" else 0.75)
                for row in rows:
                    t = row["step"] / STEPS
                    norm = (start + (end - start) * (t if arm == "no_wd" else min(1.0, 4 * t)) if arm != "matched"
                            else start * (1.0 if row["step"] == 0 else match_norm))
                    row[f"wnorm_{i}"], row[f"eff_lr_{i}"] = norm, 0.1 / norm ** 2
            (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            summary = json.loads((run_dir / "summary.json").read_text())
            out = 1e-15 if case != "broken" else 1e-2
            summary["end_probes"] = {"si_layers": 3, "si_out_max": out, "si_grad_max": 1e-14, "si_out_a0.5": out,
                                     "si_out_a2": out, "si_out_a10": out, "si_grad_a0.5": 1e-14, "si_grad_a2": 1e-14,
                                     "si_grad_a10": 1e-14, "si_as_trained_out_max": 1e-4,
                                     "si_as_trained_grad_max": 3e-4}
            (run_dir / "summary.json").write_text(json.dumps(summary))


def ics(l2, cos, rel=None, layers=(2, 3, 4)):
    """The ics probe's keys for every layer (each one value, or a list with one per seed)."""
    rel = l2 if rel is None else rel
    return {f"ics_{m}_{i}": v for i in layers for m, v in (("l2", l2), ("cos", cos), ("rel", rel))}


def s_c16(root, case):
    """BN, noisy BN and no BN with the ics probe's keys. reproduced: BN's shift a fifth of no-BN's in both measures;
    not reproduced: 3x larger (Santurkar et al.'s finding); inconclusive: about equal, seed noise either way."""
    wobble = [0.8, 1.2, 1.0, 1.1, 0.9]
    base = ics([0.01 * w for w in wobble], [1 - 0.01 * w for w in wobble])
    f = {"reproduced": 0.2, "not reproduced": 3.0}.get(case)
    if f is None:
        mine = ics([0.01 * w for w in wobble[::-1]], [1 - 0.01 * w for w in wobble[::-1]])
    else:
        mine = ics([0.01 * f * w for w in wobble[::-1]], [1 - 0.01 * f * w for w in wobble[::-1]])
    sweep(root, "c16_ics", [(BN, dict(final=0.97, extra=mine)), ({"model.norm": "noisy_bn"}, dict(final=0.96, extra=base)),
                            (NONE, dict(final=0.95, extra=base))])


def s_c17(root, case, acts=("sigmoid", "relu")):
    """BN before / after the nonlinearity at x1, x5, x30 and init x0.1, x10 (at x1), sigmoid and ReLU.
    reproduced: equal at x1, post loses at large LRs and off-default inits; not reproduced: pre 7 points below post
    everywhere; inconclusive: pre - post about 0 with 3 points of seed noise (the interval covers -1)."""
    jitter = [-0.03, 0.02, -0.02, 0.03, -0.01]
    for act in acts:
        for pos in ("pre", "post"):
            for point, over in (("x1", {"optim.lr_mult": 1}), ("x5", {"optim.lr_mult": 5}),
                                ("x30", {"optim.lr_mult": 30}), ("small", {"optim.lr_mult": 1, "model.init_scale": 0.1}),
                                ("large", {"optim.lr_mult": 1, "model.init_scale": 10})):
                worse = {"x1": 0.0, "x5": 0.02, "x30": 0.07, "small": 0.1, "large": 0.12}[point]
                if case == "reproduced":
                    final = 0.97 - (worse if pos == "post" else worse / 4)
                elif case == "not reproduced":
                    final = 0.97 - worse / 4 - (0.07 if pos == "pre" else 0.0)
                else:
                    final = 0.95 - worse / 4
                    final = [final + j for j in jitter] if pos == "pre" else final
                make = {"model.norm_position": pos, "model.act": act, **over}
                for seed in SEEDS:
                    make_run(root, "c17_position", seed, make, final=final)


SUITES = {"fig1": s_fig1, "C1": s_c1, "C2": s_c2, "C3": s_c3, "C4": s_c4, "C5": s_c5, "C6": s_c6, "C7": s_c7,
          "C8": s_c8, "C9": s_c9, "C10": s_c10, "C11": s_c11, "C13": s_c13, "C14": s_c14,
          "C16": s_c16, "C17": s_c17}
CLAIM = {c.id: c for c in CLAIMS}


def judge(root: Path, cid: str):
    return evaluate(CLAIM[cid], load_runs(root))


@pytest.mark.parametrize("case", ["reproduced", "not reproduced", "inconclusive"])
@pytest.mark.parametrize("cid", list(SUITES))
def test_each_rule_gives_each_outcome(tmp_path, cid, case):
    SUITES[cid](tmp_path, case)
    result = judge(tmp_path, cid)
    assert result.verdict == case, (result.deciding, result.reason, result.checks)
    assert result.deciding


def test_seed_noise_beats_the_old_two_se_bar_but_not_the_interval(tmp_path):
    """BN - no BN = +2, +3, +8 points over 3 seeds: mean 4.3 > 2 s.e. (3.7), the old 'clearly higher'; the paired
    t interval (t = 4.30 at 2 df) covers 0, so the claim is inconclusive."""
    s_fig1(tmp_path, "inconclusive")
    result = judge(tmp_path, "fig1")
    higher = next(c for c in result.checks if c["key"] == "higher")
    iv = higher["interval"]
    d = np.array([0.02, 0.03, 0.08])
    sem = d.std(ddof=1) / math.sqrt(3)
    assert d.mean() > 2 * sem and iv["lo"] < 0 < iv["hi"]
    assert math.isclose(iv["mean"], d.mean(), abs_tol=1e-5) and iv["test"] == "paired t" and iv["n"] == 3
    assert higher["outcome"] == "unclear" and result.verdict == "inconclusive"


# --- the protocol: frozen designs, confirmation seeds, a verdict per dataset (issue 21) ------------------------

C2_DESIGN = {"trainer.eval_every": 250}  # with make_run's 2,000 steps: C2's frozen cpu design on digits
C2_ARMS = [({**BN, "optim.lr_mult": 1, **C2_DESIGN}, dict(final=0.96)),
           ({**BN, "optim.lr_mult": 30, **C2_DESIGN}, dict(final=0.965)),
           ({**NONE, "optim.lr_mult": 30, **C2_DESIGN}, dict(final=0.5))]


def headline(root: Path, cid: str):
    return judge_claim(CLAIM[cid], load_runs(root))


def test_confirmation_runs_of_the_frozen_design_are_judged_per_dataset(tmp_path):
    sweep(tmp_path, "c2_lr", C2_ARMS, seeds=range(5), scale="cpu", seed_offset=2000)
    h = headline(tmp_path, "C2")
    assert [r.data for r in h.per_data] == ["digits", "mnist1d"]
    assert h.per_data[0].verdict == "reproduced" and h.per_data[1].verdict == "not run"
    assert h.verdict == "reproduced" and "not run on mnist1d" in h.combined and "design frozen at" in h.design_note


def test_pilot_and_exploration_seeds_are_never_read(tmp_path):
    sweep(tmp_path, "c2_lr", C2_ARMS, seeds=range(5), scale="cpu")  # seeds 0-4: exploration
    sweep(tmp_path, "c2_lr", C2_ARMS, seeds=range(5), scale="cpu", seed_offset=1000)  # the pilot
    h = headline(tmp_path, "C2")
    assert h.verdict == "not run" and h.set_aside == 30 and "no confirmation runs" in h.per_data[0].reason


def test_a_run_outside_the_frozen_design_is_refused(tmp_path):
    sweep(tmp_path, "c2_lr", C2_ARMS, seeds=range(5), scale="cpu", seed_offset=2000)
    make_run(tmp_path, "c2_lr", 5, {**NONE, "optim.lr_mult": 1, "trainer.eval_every": 100}, final=0.95, scale="cpu",
             seed_offset=2000)
    h = headline(tmp_path, "C2")
    assert h.verdict == "inconclusive" and len(h.refused) == 1
    assert "trainer.eval_every=100 (the design says 250)" in h.refused[0]
    assert all(r.checks == [] and "outside the frozen design" in r.reason for r in h.per_data if r.runs)


@pytest.mark.parametrize("verdicts, headline_verdict", [
    (("reproduced", "reproduced"), "reproduced"), (("reproduced", "not reproduced"), "partly"),
    (("reproduced", "inconclusive"), "partly"), (("not reproduced", "inconclusive"), "not reproduced"),
    (("partly", "not reproduced"), "partly"), (("inconclusive", "inconclusive"), "inconclusive"),
    (("not run", "not run"), "not run")])
def test_the_headline_combines_the_datasets_by_one_rule(verdicts, headline_verdict):
    assert combine(dict(zip(("digits", "mnist1d"), verdicts)))[0] == headline_verdict


def test_c3_gradient_flow_slightly_below_bns_is_decided(tmp_path):
    """No BN's first-layer share of the gradient at 0.83x BN's, with a narrow interval: the old rule held below
    0.5x and failed above 1x, so 0.83x was unclear at any n; with one bound (1x) it holds."""
    acc = (0.95, 0.30)
    flow_bn, flow_none = grad_norms([0.05] * 5), grad_norms([0.05 * 0.83 * (1 + 0.01 * (s - 2)) for s in range(5)])
    arms = [({**BN, "model.act": "sigmoid"}, dict(final=acc[0], extra=flow_bn)),
            ({**NONE, "model.act": "sigmoid", "model.init": "xavier"}, dict(final=acc[1], extra=flow_none)),
            ({**BN, "model.act": "relu"}, dict(final=0.96, extra=flow_bn)),
            ({**NONE, "model.act": "relu"}, dict(final=0.94, extra=grad_norms(0.08)))]
    sweep(tmp_path, "c3_sigmoid", arms)
    check = next(c for c in judge(tmp_path, "C3").checks if c["key"] == "gradient_flow")
    assert check["outcome"] == "holds" and check["interval"]["mean"] == pytest.approx(0.83, abs=0.01)


def test_c7_does_not_rest_on_the_degenerate_batch_of_two(tmp_path):
    """BN at 2 examples per normalization batch is 65 points worse, at 4 and 32 the same: the old rule compared 2
    with 32 and said reproduced; an MLP's BN over 2 values outputs +-1, so the new rule tests 4 vs 32 and flags 2."""
    s_c7(tmp_path, "degenerate only")
    result = judge(tmp_path, "C7")
    assert result.verdict != "reproduced" and result.numbers["degenerate"] == [2] and result.numbers["small"] == 4


def test_c7_an_undertrained_large_batch_is_not_read_as_bn_degrading(tmp_path):
    """BN at 32 still gaining at the end of its (fewest) steps, as the conv net on MNIST-1D at 9,600 examples was in
    issue 21's pilot: its error is the budget's, not the statistics', so the plateau precondition stops the verdict
    (the old rule read 4 vs 32 as it came)."""
    s_c7(tmp_path, "budget")
    result = judge(tmp_path, "C7")
    assert result.verdict == "inconclusive" and "precondition [plateau] fails" in result.deciding


def test_c14_a_broken_identity_is_a_broken_implementation(tmp_path):
    """The identities are checked in float64 with eps off: a sanity check of the implementation, not evidence
    about training. The old rule made them core tests; now a broken one stops the verdict (inconclusive)."""
    s_c14(tmp_path, "broken")
    result = judge(tmp_path, "C14")
    assert result.verdict == "inconclusive" and "precondition [output_invariant] fails" in result.deciding


def test_c2_compares_x30_with_x1_not_with_itself(tmp_path):
    """Validation picks x30 as BN's best LR while its test score is 3 points below x1's. The old rule compared
    x30 with BN's validation-best LR, i.e. with itself (0 [0, 0]: holds by construction); the new one compares it
    with x1, and the non-inferiority test fails."""
    arms = [({**BN, "optim.lr_mult": 1}, dict(final=0.96)), ({**BN, "optim.lr_mult": 30}, dict(final=0.93)),
            ({**NONE, "optim.lr_mult": 30}, dict(final=0.5))]
    sweep(tmp_path, "c2_lr", arms)
    for run_dir in (tmp_path / "c2_lr").iterdir():  # validation prefers x30
        summary = json.loads((run_dir / "summary.json").read_text())
        config = (run_dir / rundir.CONFIG).read_text()
        summary["val_score"] = 0.99 if "lr_mult: 30" in config else 0.95
        (run_dir / "summary.json").write_text(json.dumps(summary))
    result = judge(tmp_path, "C2")
    check = next(c for c in result.checks if c["key"] == "holds_up")
    assert check["outcome"] == "fails" and check["interval"]["mean"] == pytest.approx(-0.03, abs=0.005)
    assert result.verdict == "not reproduced"


def test_c1_flags_a_sigmoid_arm_that_reaches_the_target(tmp_path):
    """BN-x5-Sigmoid reaching Inception's best contradicts the paper ('never'): at most partly."""
    ladder = [("Inception", "none", 1, dict(final=0.90, rate=2)), ("BN-Baseline", "bn", 1, dict(final=0.91, rate=2)),
              ("BN-x5", "bn", 5, dict(final=0.92, rate=8)), ("BN-x5-Sigmoid", "bn", 5, dict(final=0.93, rate=4))]
    sweep(tmp_path, "c1_speed", [({"claim_params.variant": v, "model.norm": n, "optim.lr_mult": lr}, o)
                                 for v, n, lr, o in ladder])
    result = judge(tmp_path, "C1")
    never = next(c for c in result.checks if c["key"] == "sigmoid_never")
    assert result.verdict == "partly" and never["outcome"] == "fails"
    assert result.numbers["ladder"]["BN-x5"]["paper_speedup"] == pytest.approx(31.0 / 2.1)


def test_pooling_unlike_configs_is_refused(tmp_path):
    """A 2000-step and a 1500-step run are not two seeds: the claim is inconclusive and names the key."""
    sweep(tmp_path, "fig1", [(BN, dict(final=0.97)), (NONE, dict(final=0.93))], seeds=(0, 1, 2))
    make_run(tmp_path, "fig1", 3, {**BN, "trainer.max_steps": 1500}, final=0.97)
    result = judge(tmp_path, "fig1")
    assert result.verdict == "inconclusive"
    assert "trainer.max_steps" in result.reason and "refused to pool" in result.reason
    assert "trainer.device" not in result.reason  # neutral keys never block pooling


def test_pooling_ignores_neutral_keys(tmp_path):
    sweep(tmp_path, "fig1", [(BN, dict(final=0.97, rate=3, probe_drift=0.05)), (NONE, dict(final=0.93, probe_drift=0.6))])
    make_run(tmp_path, "fig1", 5, {**BN, "trainer.threads": 2, "trainer.device": "cuda", "data.split_seed": 9},
             final=0.97, rate=3, probe_drift=0.05)
    assert judge(tmp_path, "fig1").verdict == "reproduced"


def test_failed_runs_are_counted_and_left_out(tmp_path):
    s_c2(tmp_path, "reproduced")
    make_run(tmp_path, "c2_lr", 7, {**BN, "optim.lr_mult": 1}, final=0.1, status="failed")
    result = judge(tmp_path, "C2")
    assert result.verdict == "reproduced" and result.failed == 1
    assert result.numbers["arms"]["BN, x1"]["n"] == 5


def test_selection_needs_a_validation_score(tmp_path):
    """C3 picks each arm's LR on validation; without a val split it refuses to pick on test: inconclusive."""
    arms = [({"model.norm": n, "model.act": a, "optim.lr_mult": lr}, dict(final=0.9, val=False))
            for n in ("bn", "none") for a in ("sigmoid", "relu") for lr in (1, 5)]
    sweep(tmp_path, "c3_sigmoid", arms, seeds=(0, 1))
    result = judge(tmp_path, "C3")
    assert result.verdict == "inconclusive" and "val_score" in result.reason


def test_c6_reads_the_conv_nets_init_scale(tmp_path):
    """Conv families vary model.init_scale (the MLP's model.init_std stays put): C6 groups by what varied."""
    sweep(tmp_path, "c6_init", [({"model.name": "resnet_cifar", "model.norm": n, "model.init_scale": s}, dict(final=f))
                                for n, s, f in [("bn", 0.1, 0.9), ("bn", 1.0, 0.91), ("bn", 10.0, 0.9),
                                                ("none", 0.1, 0.3), ("none", 1.0, 0.88), ("none", 10.0, 0.1)]])
    c6 = judge(tmp_path, "C6")
    assert c6.verdict == "reproduced" and c6.numbers["init_key"] == "model.init_scale"
    assert math.isclose(c6.numbers["spread"]["no BN"]["mean"], 0.88 - 0.1, abs_tol=0.01)


@pytest.fixture(scope="module")
def holding_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for suite in SUITES.values():
        suite(root, "reproduced")
    out = tmp_path_factory.mktemp("out")
    results, figures = write_report(root, out)
    return {r.id: r for r in results}, figures, out


def test_every_claim_that_holds_is_reproduced(holding_report):
    results, _, _ = holding_report
    assert set(SUITES) <= set(results)  # a claim without a synthetic suite yet (C11-C15 as they land) is not run
    assert {cid: r.verdict for cid, r in results.items() if cid in SUITES} == {cid: "reproduced" for cid in SUITES}


def test_claims_json_has_the_numbers_and_checks(holding_report):
    _, _, out = holding_report
    claims = json.loads((out / "claims.json").read_text())
    for cid in CLAIM_IDS:
        assert {"verdict", "combined", "design", "data"} <= set(claims[cid])
        (per,) = claims[cid]["data"].values()  # the toy runs: one dataset, judged as "all" (no frozen design)
        assert {"verdict", "deciding", "ours", "paper", "rule", "runs", "failed", "checks", "numbers", "decide"} <= set(per)
        assert per["runs"] and not any(Path(d).is_absolute() for d in per["runs"])  # relative to RUNS
        for check in per["checks"]:
            assert check["outcome"] in ("holds", "fails", "unclear")
            assert {"mean", "lo", "hi", "n", "test"} <= set(check["interval"])
    assert claims["C2"]["data"]["all"]["numbers"]["diverged"]["no BN, x30"] == 5
    assert claims["C1"]["data"]["all"]["numbers"]["ladder"]["BN-x5"]["speedup"]["lo"] > 2


def test_figures_and_report_are_written(holding_report):
    results, figures, out = holding_report
    assert set(figures) == {r.slug for h in results.values() for r in h.per_data if r.verdict != "not run"}
    for path in figures.values():
        assert path.exists() and path.stat().st_size > 10_000
    report = (out / "REPORT.md").read_text()
    assert report.index("## How to read") < report.index("## Claims") < report.index("## fig1")
    assert "inconclusive" in report.split("## Claims")[0]  # the four outcomes are explained
    for cid in CLAIM_IDS:
        assert f"## {cid}:" in report and f"![{cid}]({cid.lower()}.png)" in report
    assert "95%" in report and "n=5 paired" in report


def test_rule_text_comes_from_the_rule_object():
    for claim in CLAIMS:
        text = claim.rule.text()
        for test in claim.rule.tests:
            assert f"[{test.key}]" in text and test.says in text


def test_missing_arm_is_not_run(tmp_path):
    sweep(tmp_path, "c3_sigmoid", [({"model.norm": "bn", "model.act": "sigmoid"}, dict(final=0.9))])
    result = judge(tmp_path, "C3")
    assert result.verdict == "not run" and "no BN" in result.ours


def test_no_runs_is_an_error_and_writes_nothing(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2 and not (tmp_path / "out").exists()
    assert capsys.readouterr().err.startswith(f"error: no run directories (with a summary.json) under {tmp_path}")


def test_runs_of_no_claim_give_not_run_everywhere(tmp_path, capsys):
    make_run(tmp_path / "runs", "adhoc", 0, {}, final=0.9)
    main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")])
    claims = json.loads((tmp_path / "out" / "claims.json").read_text())
    assert {c["verdict"] for c in claims.values()} == {"not run"}
    assert (tmp_path / "out" / "REPORT.md").exists()
    assert "not run" in capsys.readouterr().out


def test_wandb_summary_run_is_never_fatal(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "bogus-mode")  # wandb.init rejects it: the report must still be written
    s_c10(tmp_path / "runs", "reproduced")
    main([str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--wandb"])
    assert "W&B summary run skipped" in capsys.readouterr().out
    assert (tmp_path / "out" / "c10.png").stat().st_size > 0


def test_figures_draw_from_the_judges_numbers_alone(holding_report, tmp_path):
    """A figure never regroups runs: with the runs taken away, every figure is drawn the same way."""
    import dataclasses

    from bnrepro.report.figures import draw

    results, _, _ = holding_report
    for result in (r for h in results.values() for r in h.per_data):
        if result.verdict == "not run":  # C11-C15 have no runs in this suite: no figure
            continue
        bare = dataclasses.replace(result, runs=[])
        assert draw(bare, tmp_path).stat().st_size > 10_000


def test_c17_a_cell_that_runs_relu_alone_is_judged_on_relu_alone(tmp_path):
    """The cpu design's ResNet-8 cell runs ReLU only: the sigmoid tests are not applicable there (left out of
    the checks), not unclear; a measurement that is merely missing stays unclear (rules.NOT_APPLICABLE)."""
    from bnrepro.report.rules import NOT_APPLICABLE
    s_c17(tmp_path, "reproduced", acts=("relu",))
    result = judge(tmp_path, "C17")
    assert result.verdict == "reproduced", (result.deciding, result.checks)
    assert {c["key"] for c in result.checks} == {"score_relu", "lr_tolerance_relu", "init_relu"}
    rule = CLAIM["C17"].rule
    verdict, deciding, checks = rule.judge({t.key: None for t in rule.tests})
    assert verdict == "inconclusive" and len(checks) == len(rule.tests)
    verdict, _, checks = rule.judge({t.key: NOT_APPLICABLE for t in rule.tests if "sigmoid" in t.key})
    assert len(checks) == 3 and verdict == "inconclusive"
