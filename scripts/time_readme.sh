#!/usr/bin/env bash
# Wall-clock and CPU time of the README's commands, one line each, for the timings the README states.
# On a shared machine, run it when it is quiet, or read the numbers as ranges (the load is printed).
#   bash scripts/time_readme.sh demo       # demo --quick and the full demo
#   bash scripts/time_readme.sh workflow   # README steps 2-4 on the Emo-DB copy (24 min on 2 quiet cores)
#   bash scripts/time_readme.sh all
# Prints "step | wall | cpu (user+sys) | load before" rows; outputs go to ${OUT:-/tmp/parrot-timings}.
set -euo pipefail
what=${1:-demo}
root=${EMODB:-../shared/data/emodb}
out=${OUT:-/tmp/parrot-timings}
mkdir -p "$out"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

step() {  # step NAME CMD...
  local name=$1; shift
  local load; load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo "?")
  /usr/bin/time -f "%e %U %S" -o "$out/.t" "$@" > "$out/$name.log" 2>&1 || { echo "$name: failed, see $out/$name.log"; return 1; }
  read -r wall user sys < "$out/.t"
  awk -v n="$name" -v w="$wall" -v u="$user" -v s="$sys" -v l="$load" \
    'BEGIN { printf "| %s | %.0f s | %.0f s | %s |\n", n, w, u + s, l }'
}

echo "| step | wall | cpu | load before | ($(getconf _NPROCESSORS_ONLN) cores, $(date -u +%F))"  # nproc obeys OMP_NUM_THREADS
if [[ $what == demo || $what == all ]]; then
  rm -rf "$out/demo-quick" "$out/demo-full"
  step "demo --quick" parrot-ser demo --quick --out "$out/demo-quick"
  step "demo (full)" parrot-ser demo --out "$out/demo-full"
fi
if [[ $what == workflow || $what == all ]]; then
  rm -rf "$out/feats" "$out/runs"
  step "2a. extract logmel" parrot-ser extract "$root" --corpus emodb -e logmel --out "$out/feats" --threads 1 --quiet
  step "2b. extract ssam-tiny+hubert-base (random init)" parrot-ser extract "$root" --corpus emodb -e ssam-tiny \
    -e hubert-base --random-init --out "$out/feats" --threads 1 --quiet
  step "3. train parrot-token, 3 seeds x 5 folds" parrot-ser train --features "$out/feats" --encoder ssam-tiny \
    --encoder hubert-base --model parrot-token --seeds 0,1,2 --threads 1 --out "$out/runs/parrot-token"
  step "4. grid, 5 models, 3 seeds" parrot-ser grid --features "$out/feats" --encoders logmel,ssam-tiny,hubert-base \
    --models cnn,concat,hadamard,parrot,parrot-token --pairs hetero --seeds 0,1,2 --threads 1 --out "$out/runs/grid"
fi
