#!/usr/bin/env bash
# Runs every speed benchmark (scripts/bench_*.py) and writes each one's markdown report to
# results/bench/<name>.md (bench_loader.py -> loader.md). `make bench` calls this.
# Usage: scripts/bench.sh [name ...]   e.g. scripts/bench.sh trainer loader
set -euo pipefail
cd "$(dirname "$0")/.."
export WANDB_MODE=disabled
mkdir -p results/bench
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for script in scripts/bench_*.py; do names+=("$(basename "$script" .py | sed 's/^bench_//')"); done
fi
for name in "${names[@]}"; do
  out="results/bench/${name}.md"
  echo "bench: scripts/bench_${name}.py -> ${out}" >&2
  python "scripts/bench_${name}.py" > "${out}.tmp"
  printf '\n_Written by `scripts/bench.sh` (`python scripts/bench_%s.py`), %s._\n' "$name" "$(date -u +%Y-%m-%d)" >> "${out}.tmp"
  mv "${out}.tmp" "${out}"
done
