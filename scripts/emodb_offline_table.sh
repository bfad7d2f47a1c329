#!/usr/bin/env bash
# The results table in docs/results.md: the real Emo-DB copy (../shared/data/emodb), encoders that work
# offline (logmel; UNTRAINED random-init ssam-tiny and tiny hubert-base), speaker-independent 5-fold CV,
# 3 seeds. Resumable: rerun the same command to continue.
#   bash scripts/emodb_offline_table.sh [EMODB_ROOT] [OUT_DIR]
set -euo pipefail
root=${1:-../shared/data/emodb}
out=${2:-runs/emodb-offline}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # small heads: one thread is faster on 2 shared cores
parrot-ser extract "$root" --corpus emodb -e logmel --out "$out/features" --quiet
parrot-ser extract "$root" --corpus emodb -e ssam-tiny -e hubert-base --random-init --seed 0 \
  --out "$out/features" --quiet
parrot-ser grid --features "$out/features" --encoders logmel,ssam-tiny,hubert-base \
  --models cnn,fcn,concat,hadamard,gated,xattn,ot,parrot,parrot-token --pairs hetero \
  --seeds 0,1,2 --folds 5 --epochs 30 --patience 10 --threads 1 --quiet --out "$out/grid"
echo "table: $out/grid/table.md   significance: $out/grid/significance.md"
