#!/usr/bin/env bash
# Run the benchmarks behind the README's published numbers; each writes docs/benchmarks/<name>.json and .md
# (measured numbers, with the command, machine and date).
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: bash tasks/benchmarks.sh [--dry-run] [all | NAME ...]

Runs each named benchmark (default: all, in this order; the two relay ones take about 2 hours each on a
2-core CPU), from the repository root; each publishes into docs/benchmarks/:

  fundus       python tasks/fundus/benchmark.py --repeat 30           -> fundus.{json,md}
  mediastinum  python tasks/mediastinum/benchmark.py                  -> mediastinum.{json,md}
  midline      python tasks/midline/benchmark.py                      -> midline.{json,md}
  relay        python tasks/relay/benchmark_fundus.py --preset reduced --norm-eval image --threads 1 --jobs 2
                 --opt lwf.distill_inputs=both --name relay_fundus_image_lwf_both
                                                          -> relay_fundus_image_lwf_both.{json,md}
               (the README's relay numbers: real fundus data, DRIVE -> STARE -> HRF, every method normalising
               each test image by its own statistics, LwF distilling on the batch and on perturbed views;
               under 2 hours on a 2-core CPU, 112 min measured)
  relay-running  python tasks/relay/benchmark_fundus.py --preset reduced -> relay_fundus.{json,md}
               (the same comparison with BatchNorm's running statistics at inference, the library default,
               and LwF's default settings; 102 min measured)
               A rerun of either takes over every finished run from runs/relay-fundus/.

The SYNTHETIC relay comparison (python tasks/relay/benchmark.py) is not run here: at its default tiny budget
its numbers say nothing about the methods (see tasks/relay/README.md).

  --dry-run, -n   print the commands without running them
  --help, -h      this text
USAGE
}

cd "$(dirname "$0")/.."
export NO_ALBUMENTATIONS_UPDATE=1
declare -A CMD=(
  [fundus]="python tasks/fundus/benchmark.py --repeat 30"
  [mediastinum]="python tasks/mediastinum/benchmark.py"
  [midline]="python tasks/midline/benchmark.py"
  [relay]="python tasks/relay/benchmark_fundus.py --preset reduced --norm-eval image --threads 1 --jobs 2 --opt lwf.distill_inputs=both --name relay_fundus_image_lwf_both"
  [relay-running]="python tasks/relay/benchmark_fundus.py --preset reduced"
)
ORDER=(fundus mediastinum midline relay relay-running)

dry=0
names=()
for a in "$@"; do
  case "$a" in
    -h|--help) usage; exit 0 ;;
    -n|--dry-run) dry=1 ;;
    all) names+=("${ORDER[@]}") ;;
    *)
      if [[ -n "${CMD[$a]+x}" ]]; then names+=("$a")
      else echo "benchmarks.sh: unknown benchmark or option: '$a'" >&2; usage >&2; exit 2; fi ;;
  esac
done
[[ ${#names[@]} -gt 0 ]] || names=("${ORDER[@]}")

for b in "${names[@]}"; do
  echo "== $b: ${CMD[$b]}"
  [[ $dry == 1 ]] || ${CMD[$b]}
done
