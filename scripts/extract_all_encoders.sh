#!/usr/bin/env bash
# Pipeline check: every registered encoder extracts pooled AND frame features for the whole Emo-DB copy
# on CPU, with UNTRAINED random-init weights (no hub here). HF encoders use their tiny offline random-init
# config; the Mamba small/base sizes keep their real width but only 2 blocks (depth=2) to save CPU time.
#   bash scripts/extract_all_encoders.sh [EMODB_ROOT] [OUT_DIR]
set -euo pipefail
root=${1:-../shared/data/emodb}
out=${2:-runs/emodb-all-encoders}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
for enc in $(parrot-ser encoders list --json | python -c "import json,sys; print(' '.join(e['name'] for e in json.load(sys.stdin)))"); do
  opts=()
  case "$enc" in ssam-small|ssam-base|ssamba-small|ssamba-base) opts=(--option "$enc:depth=2");; esac
  [ "$enc" = logmel ] && init=() || init=(--random-init)
  parrot-ser extract "$root" --corpus emodb -e "$enc" "${init[@]}" "${opts[@]}" --frames --dtype float16 \
    --out "$out" --quiet --json > "$out.$enc.json" 2> "$out.$enc.log" || { echo "FAILED: $enc (see $out.$enc.log)"; exit 1; }
  python - "$out" "$enc" <<'PY'
import sys
from parrot_ser.features import open_store
fs = open_store(sys.argv[1]).get(sys.argv[2])
f0 = fs.frames(0)
rep = fs.report()
print(f"{sys.argv[2]:24s} n={len(fs.utt_ids)} pooled={fs.pooled().shape[1]} frames/utt={f0.shape[0]}x{f0.shape[1]} "
      f"skipped={rep['n_skipped']} utt/s={rep.get('last_run', {}).get('utt_per_s') or 0:.1f}")
PY
done
