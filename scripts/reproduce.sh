#!/usr/bin/env bash
# The whole claims suite: every experiment's sweep, then the report. Called by `make reproduce`.
# Env: SCALE (cpu|cifar|imagenet), LAUNCHER (joblib|slurm|basic|submitit_local), RUNS (run dirs, default
# runs/$SCALE), OUT (report dir, default results/$SCALE), EXTRA (overrides appended to every sweep, e.g.
# "trainer.max_steps=20 seed=0" for a smoke run), EXPERIMENTS (a subset, space-separated), KEEP_GOING (1: run
# the other experiments after one fails, write the report, list the failures, exit 1; default: stop at the
# first failed experiment), JOBS_PER_GPU (cifar scale with joblib: runs sharing the one GPU, default 4).
# Finished runs are skipped by the trainer, so re-running resumes an interrupted suite.
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${SCALE:-cpu}
LAUNCHER=${LAUNCHER:-joblib}
PILOT=${PILOT:-0}
if [ "$PILOT" = 1 ]; then RUNS=${RUNS:-runs/pilot/$SCALE}; else RUNS=${RUNS:-runs/$SCALE}; fi
OUT=${OUT:-results/$SCALE}
EXTRA=${EXTRA:-}
export WANDB_MODE=${WANDB_MODE:-offline} HYDRA_FULL_ERROR=${HYDRA_FULL_ERROR:-0}
PYTHON=${PYTHON:-python}
# every configs/experiment/*.yaml, fig1 then C1..C15 (bnrepro/arms.py: found, not listed)
EXPERIMENTS=${EXPERIMENTS:-$("$PYTHON" -m bnrepro.arms)}

# --- progress: experiment k of N, runs done and skipped, ETA from the experiments finished so far ---
finished_runs() {  # summary.json files under $1 whose status is finished (the trainer skips those runs)
  { grep -rlsE --include=summary.json '"status": "(completed|diverged)"' "$1" || true; } | wc -l
}
minutes() { printf '%d min %02d s' $(( $1 / 60 )) $(( $1 % 60 )); }
progress_line() {  # k N experiment finished_before finished_after seconds_this seconds_so_far
  local left=$(( $2 - $1 ))
  printf '[%d/%d] %s: %d runs done, %d skipped (already finished), in %s' "$1" "$2" "$3" $(( $5 - $4 )) "$4" \
    "$(minutes "$6")"
  (( left > 0 )) && printf '; ETA %s for the other %d experiment(s) (mean %s each so far)' \
    "$(minutes $(( $7 * left / $1 )))" "$left" "$(minutes $(( $7 / $1 )))"
  echo
}
KEEP_GOING=${KEEP_GOING:-0}
# At cifar scale one GPU trains JOBS_PER_GPU runs at once (joblib): one ResNet-20 leaves most of a modern GPU idle;
# results/bench/gpu.md (d) measured 4.0x the total images/s of one run at k=4 on an H200 (2.9x on another), and
# k=8 at most 1% more.
JOBS=()
if [ "$SCALE" = cifar ] && [ "$LAUNCHER" = joblib ]; then JOBS=("hydra.launcher.n_jobs=${JOBS_PER_GPU:-4}"); fi

SEEDS=()
if [ "$PILOT" = 1 ]; then SEEDS=('seeds=${pilot_seeds}'); fi
start=$(date +%s)
total=$(wc -w <<< "$EXPERIMENTS")
k=0
failed=()
for experiment in $EXPERIMENTS; do
  t0=$(date +%s) k=$(( k + 1 )) before=$(finished_runs "$RUNS/$experiment")
  echo "[$k/$total] experiment $experiment (scale=$SCALE, launcher=$LAUNCHER) -> $RUNS/$experiment"
  status=0
  # shellcheck disable=SC2086  # EXTRA is a list of overrides
  "$PYTHON" -m bnrepro.train -m "experiment=$experiment" "scale=$SCALE" "hydra/launcher=$LAUNCHER" \
    "hydra.sweep.dir=$RUNS/$experiment" "${JOBS[@]}" "${SEEDS[@]}" $EXTRA || status=$?
  if [ "$status" -ne 0 ]; then
    echo "[$k/$total] $experiment FAILED (exit $status) after $(( $(date +%s) - t0 )) s: see the error lines above" \
      "and the failed runs' summary.json in $RUNS/$experiment" >&2
    failed+=("$experiment")
    if [ "$KEEP_GOING" != 1 ]; then
      echo "reproduce: stopped at $experiment; rerun to resume, or KEEP_GOING=1 to run the other experiments" >&2
      exit 1
    fi
    continue
  fi
  progress_line "$k" "$total" "$experiment" "$before" "$(finished_runs "$RUNS/$experiment")" \
    $(( $(date +%s) - t0 )) $(( $(date +%s) - start ))
done
if [ "$PILOT" = 1 ]; then
  "$PYTHON" -m bnrepro.report.power "$RUNS" --out "$RUNS/POWER.md"
  echo "pilot: the power table is in $RUNS/POWER.md; freeze each claim's Design (bnrepro/claims/) from it"
  exit 0
fi
"$PYTHON" -m bnrepro.report "$RUNS" --out "$OUT" --wandb
elapsed=$(( $(date +%s) - start ))
printf 'reproduce: scale=%s, %d experiments, total wall time %d min %02d s; report in %s/REPORT.md\n' \
  "$SCALE" "$(wc -w <<< "$EXPERIMENTS")" $(( elapsed / 60 )) $(( elapsed % 60 )) "$OUT"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "reproduce: ${#failed[@]} experiment(s) FAILED: ${failed[*]} (their failed runs are counted in the report)" >&2
  exit 1
fi
