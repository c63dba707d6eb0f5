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

KEEP_GOING=${KEEP_GOING:-0}
# At cifar scale one GPU trains JOBS_PER_GPU runs at once (joblib): one ResNet-20 leaves most of a modern GPU idle;
# results/bench/gpu.md (d) measured 4.0x the total images/s of one run at k=4 on an H200 (2.9x on another), and
# k=8 at most 1% more.
JOBS=()
if [ "$SCALE" = cifar ] && [ "$LAUNCHER" = joblib ]; then JOBS=("hydra.launcher.n_jobs=${JOBS_PER_GPU:-4}"); fi
# At cpu scale the experiments' jobs run in STREAMS processes (default: the cores) that take experiment-seed tasks
# from one queue, so no core idles while an experiment's last jobs finish (bnrepro/suite.py); elsewhere one
# experiment at a time, its jobs in parallel (STREAMS=1).
if [ -z "${STREAMS:-}" ]; then
  if [ "$SCALE" = cpu ] && [ "$LAUNCHER" = joblib ]; then
    STREAMS=$("$PYTHON" -c 'import os; print(len(os.sched_getaffinity(0)))')
  else
    STREAMS=1
  fi
fi
SEEDS=()
if [ "$PILOT" = 1 ]; then SEEDS=('seeds=${pilot_seeds}'); fi
FLAGS=()
if [ "$KEEP_GOING" = 1 ]; then FLAGS=(--keep-going); fi

# Every experiment's sweep from one command (bnrepro/suite.py: STREAMS processes taking experiment-seed tasks, or
# one process whose joblib workers serve every experiment), with the progress lines: task k of N, runs done, ETA.
# Finished runs are skipped by the trainer.
start=$(date +%s)
status=0
# shellcheck disable=SC2086  # EXPERIMENTS and EXTRA are lists
"$PYTHON" -m bnrepro.suite $EXPERIMENTS --scale "$SCALE" --launcher "$LAUNCHER" --runs "$RUNS" --streams "$STREAMS" \
  "${FLAGS[@]}" \
  -- "${JOBS[@]}" "${SEEDS[@]}" $EXTRA || status=$?
if [ "$status" -ne 0 ] && [ "$KEEP_GOING" != 1 ]; then exit 1; fi
if [ "$PILOT" = 1 ]; then
  "$PYTHON" -m bnrepro.report.power "$RUNS" --out "$RUNS/POWER.md"
  echo "pilot: the power table is in $RUNS/POWER.md; freeze each claim's Design (bnrepro/claims/) from it"
  exit 0
fi
"$PYTHON" -m bnrepro.report "$RUNS" --out "$OUT" --wandb
elapsed=$(( $(date +%s) - start ))
printf 'reproduce: scale=%s, %d experiments, total wall time %d min %02d s; report in %s/REPORT.md\n' \
  "$SCALE" "$(wc -w <<< "$EXPERIMENTS")" $(( elapsed / 60 )) $(( elapsed % 60 )) "$OUT"
exit "$status"
