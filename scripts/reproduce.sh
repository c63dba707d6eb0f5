#!/usr/bin/env bash
# The whole claims suite: every experiment's sweep, then the report. Called by `make reproduce`.
# Env: SCALE (cpu|cifar|imagenet), LAUNCHER (joblib|slurm|basic|submitit_local), RUNS (run dirs, default
# runs/$SCALE), OUT (report dir, default results/$SCALE), EXTRA (overrides appended to every sweep, e.g.
# "trainer.max_steps=20 seed=0" for a smoke run), EXPERIMENTS (a subset, space-separated), KEEP_GOING (1: run
# the other experiments after one fails, write the report, list the failures, exit 1; default: stop at the
# first failed experiment). Finished runs are skipped by the trainer, so re-running resumes an interrupted suite.
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${SCALE:-cpu}
LAUNCHER=${LAUNCHER:-joblib}
RUNS=${RUNS:-runs/$SCALE}
OUT=${OUT:-results/$SCALE}
EXTRA=${EXTRA:-}
EXPERIMENTS=${EXPERIMENTS:-"fig1 c1_speed c2_lr c3_sigmoid c4_drift c5_dropout c6_init c7_small_batch c8_popstats c9_noisy c10_small_lr"}
export WANDB_MODE=${WANDB_MODE:-offline} HYDRA_FULL_ERROR=${HYDRA_FULL_ERROR:-0}
PYTHON=${PYTHON:-python}

KEEP_GOING=${KEEP_GOING:-0}

start=$(date +%s)
failed=()
for experiment in $EXPERIMENTS; do
  t0=$(date +%s)
  echo "== $experiment (scale=$SCALE, launcher=$LAUNCHER) -> $RUNS/$experiment"
  status=0
  # shellcheck disable=SC2086  # EXTRA is a list of overrides
  "$PYTHON" -m bnrepro.train -m "experiment=$experiment" "scale=$SCALE" "hydra/launcher=$LAUNCHER" \
    "hydra.sweep.dir=$RUNS/$experiment" $EXTRA || status=$?
  if [ "$status" -ne 0 ]; then
    echo "== $experiment FAILED (exit $status) after $(( $(date +%s) - t0 )) s: see the error lines above and the" \
      "failed runs' summary.json in $RUNS/$experiment" >&2
    failed+=("$experiment")
    if [ "$KEEP_GOING" != 1 ]; then
      echo "reproduce: stopped at $experiment; rerun to resume, or KEEP_GOING=1 to run the other experiments" >&2
      exit 1
    fi
    continue
  fi
  echo "== $experiment done in $(( $(date +%s) - t0 )) s"
done
"$PYTHON" -m bnrepro.report "$RUNS" --out "$OUT" --wandb
elapsed=$(( $(date +%s) - start ))
printf 'reproduce: scale=%s, %d experiments, total wall time %d min %02d s; report in %s/REPORT.md\n' \
  "$SCALE" "$(wc -w <<< "$EXPERIMENTS")" $(( elapsed / 60 )) $(( elapsed % 60 )) "$OUT"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "reproduce: ${#failed[@]} experiment(s) FAILED: ${failed[*]} (their failed runs are counted in the report)" >&2
  exit 1
fi
