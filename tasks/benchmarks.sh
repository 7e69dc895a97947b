#!/usr/bin/env bash
# Run every benchmark; each writes docs/benchmarks/<name>.json and <name>.md (measured numbers, with the
# command, machine and date). Pass a name to run one: bash tasks/benchmarks.sh fundus
set -euo pipefail
cd "$(dirname "$0")/.."
export NO_ALBUMENTATIONS_UPDATE=1
which=${1:-all}
for b in fundus mediastinum midline relay; do
  if [[ "$which" == all || "$which" == "$b" ]]; then
    script=tasks/$b/benchmark.py
    [[ -f $script ]] || { echo "no benchmark at $script" >&2; continue; }
    echo "== $script"
    python "$script"
  fi
done
