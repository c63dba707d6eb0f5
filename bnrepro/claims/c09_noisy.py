"""C9: BN's gain is not from reducing covariate shift (Santurkar et al. 2018, section 2.1, Fig. 2): "noisy BN",
BN followed by random time-varying, non-zero-mean, non-unit-variance noise that makes the layer distributions
unstable, trains about as well as plain BN.

Issue 21's design: "about as well" is an equivalence, score(noisy BN) - score(BN) within +-MARGIN by TOST, the
margin fixed before the confirmation runs (MARGIN_SOURCE), at each noise scale of a small sweep (NOISES), the core
test at one scale declared in advance (CORE_NOISE) and the others as support; a precondition that the noise
measurably destabilizes the distributions (the drift over every unit of the probed layer, training mode). The
design before asked noisy BN to keep 3/4 of BN's gain over no BN: on digits, where that gain is about a point, a
quarter-point bar inside the seeds' noise (about 180 seeds to decide)."""
from __future__ import annotations

from bnrepro.report import plots as P, stats
from bnrepro.report.design import Design
from bnrepro.report.drift import UNITS, drift_units, unit_series
from bnrepro.report.judging import (
    DIRECTION, DIRECTION_RATIO, Claim, Judged, Result, arm_json, arms_of, by_seed, diff, label, need, score)

from bnrepro.report.panels import PROBES, SCORE, TEST_ACC, line
from bnrepro.report.rules import CORE, PRECONDITION, Rule, SUPPORT, Test
from bnrepro.report.runs import Run

TRAIN_PROBE = "probe_train_units_p"  # every unit's percentiles seen in training mode, where noisy BN's noise is on
# The noise scales (config group c9_arm: model.noise_mean = model.noise_std = the scale; bnrepro/norm/noisy.py),
# fixed before the confirmation runs. The core test reads CORE_NOISE, the norm's default (a shift mean up to +-0.5
# and a spread up to 0.5 around BN's unit-variance output, redrawn every step: time-varying, non-zero mean,
# non-unit variance, as Santurkar et al. describe theirs; their exact distribution was not retrievable here); the
# other scales are support tests (the same margin), so the verdict rests on one pre-declared test, not on the best
# of three.
NOISES = (0.25, 0.5, 1.0)
CORE_NOISE = 0.5
# The equivalence margin, fixed before the confirmation runs: MARGIN_SOURCE says where it comes from.
MARGIN = 0.02
MARGIN_SOURCE = ("2 points: twice MIN_GAIN, the smallest gain the rules call one (1 point); a difference between "
                 "noisy BN and BN smaller than two such gains is 'about as well'. Santurkar et al. give curves only "
                 "(Fig. 2: noisy and plain BN overlap) and no number to take a margin from")


def _noise_key(scale: float) -> str:
    return "as_well" if scale == CORE_NOISE else f"as_well_{scale:g}"


RULE_C9 = Rule((
    Test("bn_helps", PRECONDITION, "BN scores higher than no BN (else there is no gain to explain)",
         "score(BN) - score(no BN)", "greater", 0.0, why=DIRECTION),
    Test("destabilizes", PRECONDITION, f"the noise (scale {CORE_NOISE:g}) makes the distributions less stable than "
         "BN's (else noisy BN manipulates nothing)", f"the drift ratio noisy BN ({CORE_NOISE:g}) / BN, every unit of "
         "the probed layer, training-mode probe", "greater", 1.0, unit="ratio", why=DIRECTION_RATIO),
    Test("as_well", CORE, f"noisy BN (noise scale {CORE_NOISE:g}) trains about as well as BN",
         f"score(noisy BN, {CORE_NOISE:g}) - score(BN)", "equivalent", MARGIN, why=MARGIN_SOURCE),
    *(Test(_noise_key(x), SUPPORT, f"at noise scale {x:g} too, noisy BN trains about as well as BN",
           f"score(noisy BN, {x:g}) - score(BN)", "equivalent", MARGIN, why=MARGIN_SOURCE)
      for x in NOISES if x != CORE_NOISE),
    Test("noisy_helps", SUPPORT, f"noisy BN ({CORE_NOISE:g}) scores higher than no BN",
         f"score(noisy BN, {CORE_NOISE:g}) - score(no BN)", "greater", 0.0, why=DIRECTION),
), notes=f"Noisy BN at noise scales {', '.join(f'{x:g}' for x in NOISES)} (shift means from U(-x, x) and spreads "
         "from U(0, x) per channel, redrawn at every step; per example y (1 + s z1) + (mu + s z2)); scores paired "
         "by seed; drift over every unit of the probed layer (geometric mean of the units' drifts), in training "
         f"mode where the noise is on. The core test reads scale {CORE_NOISE:g} only; the others are support.")


def arm(run: Run) -> tuple:
    """(norm, noise scale): the scale only for noisy BN (bn and none do not read it)."""
    norm = run.get("model.norm")
    return (norm, float(run.get("model.noise_mean") if run.get("model.noise_mean") is not None else CORE_NOISE)
            if norm == "noisy_bn" else None)


def judge_c9(runs: list[Run]) -> Judged:
    arms = arms_of(runs, arm)
    bn, none = need(arms, ("bn", None), label("bn")), need(arms, ("none", None), label("none"))
    noisy = {x: arms[("noisy_bn", x)] for x in NOISES if ("noisy_bn", x) in arms}
    core = need(noisy, CORE_NOISE, f"noisy BN at noise scale {CORE_NOISE:g}")
    s = {"bn": by_seed(bn, score), "none": by_seed(none, score)}
    s.update({x: by_seed(rs, score) for x, rs in noisy.items()})
    # noisy BN injects its noise in training mode only, so its drift shows in a training-mode probe
    train_probe = all(unit_series(run, f"{TRAIN_PROBE}50")[0].size for run in bn + core)
    prefix = TRAIN_PROBE if train_probe else UNITS
    # over every unit of the layer (bnrepro/report/drift.py): one unit's drift varies too much across seeds
    d = {k: by_seed(rs, lambda r: drift_units(r, prefix)) for k, rs in (("bn", bn), ("none", none), *noisy.items())}
    measured = {"bn_helps": diff(s["bn"], s["none"]),
                "destabilizes": stats.ratio(d[CORE_NOISE], d["bn"]) if d[CORE_NOISE] and d["bn"] else None,
                "noisy_helps": diff(s[CORE_NOISE], s["none"])}
    for x in NOISES:
        measured[_noise_key(x)] = stats.tost(s[x], s["bn"], MARGIN) if x in s else None
    name = lambda k: label(k) if isinstance(k, str) else f"noisy BN {k:g}"
    numbers = {"arms": {name(k): arm_json(v) for k, v in s.items()},
               "drift": {name(k): arm_json(v, "plain") for k, v in d.items() if v},
               "vs_bn": {f"{x:g}": measured[_noise_key(x)].to_json() for x in NOISES if measured.get(_noise_key(x))},
               "drift_vs_bn": {f"{x:g}": stats.ratio(d[x], d["bn"]).to_json() for x in noisy if d[x] and d["bn"]},
               "noises": list(NOISES), "core_noise": CORE_NOISE, "margin": MARGIN,
               "probe": "training mode" if train_probe else "evaluation mode (noisy BN's noise is off)"}
    return Judged(measured, numbers, "score " + ", ".join(f"{k} {v['text']}" for k, v in numbers["arms"].items()))


# --- the figure ---------------------------------------------------------------------------------------------------

def c9(result: Result):
    """(a) score per arm; (b) drift per arm (every unit, training mode); (c) noisy BN - BN per noise scale with
    the equivalence margin, the core scale marked."""
    from bnrepro.report import style

    n = result.numbers
    fig, gs = P.frame(result, 20, 5.8, (1, 3), test_width=1.0)
    a, b, c = fig.add_subplot(gs[0, 0]), fig.add_subplot(gs[0, 1]), fig.add_subplot(gs[0, 2])
    P.arm_dots(a, n["arms"], ylabel="score, test accuracy (%)")
    a.set_title("(a) score per arm")
    P.arm_dots(b, n["drift"], 1.0, "", "probe drift (range / spread)")
    b.set_title(f"(b) drift of the probed layer, geometric mean over its units\n({n.get('probe', '')})")
    m = 100 * n["margin"]
    c.axhspan(-m, m, color="0.9", zorder=0, label=f"equivalence margin +-{m:g} points (fixed in advance)")
    c.axhline(0, color="black", lw=0.8)
    scales = [x for x in n["noises"] if f"{x:g}" in n["vs_bn"]]
    support = [x for x in scales if x != n["core_noise"]]
    for i, x in enumerate(scales):
        core = x == n["core_noise"]
        style.dot(c, i, n["vs_bn"][f"{x:g}"], col="black" if core else "0.5",
                  label="core scale" if core else "support scales" if support and x == support[0] else None)
    style.categories(c, [f"noise {x:g}" + (" (core)" if x == n["core_noise"] else "") for x in scales], 12)
    c.set_ylabel("score(noisy BN) - score(BN), points (95% interval)")
    c.set_title("(c) noisy BN vs BN per noise scale")
    c.legend(fontsize=style.FONT["legend"], loc="lower left")
    P.caption(fig, result, list(n["arms"]), "The paper's claim is qualitative (no number to draw). The TOST reads "
              "the 90% interval; (c) shows the 95% one.")
    return fig


PILOT_CPU = (
    "pilot seeds 1000-1004, this design's arms run to 2,000 (digits) / 3,000 (MNIST-1D) steps at a constant LR and "
    "read at this design's budget (1,500 / 2,000: the score of the evaluations up to that step, what a run of that "
    "budget scores). The margin (2 points) was fixed before the pilot was read. Digits: BN 97.7%, no BN 96.6%, "
    "noisy BN 0.25 / 0.5 / 1.0: 97.5 / 97.4 / 97.0%; bn_helps +1.2 points [+0.1, +2.2] (sd 0.84: n=8 for a 1-point "
    "effect); noisy - BN at the core scale 0.5: -0.4 [-1.1, +0.3] (sd 0.57, n=5 for a 1-point distance from the "
    "margin), 0.25: -0.2 (sd 0.21), 1.0: -0.7 (sd 0.49); drift noisy 0.5 / BN 1.99x [1.95, 2.03] (full 2,000-step "
    "runs; 0.25: 1.36x, 1.0: 3.11x). MNIST-1D: BN 61.3%, no BN 40.2%, noisy BN 60.0 / 54.3 / 31.5%; bn_helps +21.0 "
    "[+19.3, +22.8] (sd 1.4); noisy - BN at 0.5: -7.0 [-9.4, -4.6] (sd 1.95: 5 points beyond the margin, n=3 "
    "decides it), 0.25: -1.2 [-1.8, -0.6] (sd 0.47), 1.0: -29.7 (sd 0.71); drift ratio 1.59x at 0.5 (3,000-step "
    "runs; 0.25: 1.19x, 1.0: 2.30x). n=5 seeds per arm (the suite's 30-minute budget on 2 cores; the pilot asks "
    "for 5 on the core test, 8 on digits' bn_helps precondition, which the cap leaves at 5).")
# The design, frozen before the confirmation seeds ran (bnrepro/report/design.py): the report judges only
# confirmation runs of this config, and names the commit.
DESIGNS = {"cpu": Design(
    data=('digits', 'mnist1d'),
    config={"trainer.max_steps": {"digits": 1500, "mnist1d": 2000}, "trainer.eval_every": 100},
    n=5,
    pilot=PILOT_CPU,
    commit="902df75")}


CLAIM = Claim(
    "C9", "BN's gain is not from reducing covariate shift", ("c9_noisy",), {},
    "Santurkar et al.: noisy BN (random time-varying shift and scale after each BN) trains about as well as "
    "plain BN although its layer distributions are less stable", RULE_C9, ("model.norm", "model.noise_mean"), judge_c9,
    designs=DESIGNS)
FIGURE = c9


# --- the W&B Report's panels (bnrepro/report/panels.py) -----------------------------------------------------------

PANELS = [TEST_ACC, line("probe input: 15/50/85th percentiles vs step", PROBES), SCORE]
