#!/usr/bin/env bash
# Reruns the README's commands from a fresh clone and records wall AND CPU time of each, dated: every
# time the README quotes comes from the last run of this script (docs/readme_timings.md). Not in CI.
#
#   bash scripts/time_readme.sh [all|quickstart|demo|workflow|real|labels]...   (default: all)
#
#   quickstart  git clone, venv, the README's pip installs (network: PyPI)
#   demo        parrot-ser demo --quick, then the full demo (demo-quick: only the first)
#   workflow    README workflow steps 1, 2, 3 and 5 on the Emo-DB copy (not the step-4 grid), and what
#               one more clip costs the exported model (scripts/predict_latency.py)
#   real        the README's real-weights commands (whisper-base, every layer; fcn on layer 2)
#   labels      the README's "Your labels, your targets" block (own labels, regression, multitask), and
#               the headline numbers each run printed, to compare with the README's copy of them
#
# Environment: SRC (repository to clone; default: this one), OUT (default /tmp/parrot-readme),
# SHARED (the project's shared data, linked as ../shared next to the clone; default: ../shared seen
# from this repository), REUSE_VENV=DIR (skip the installs: use that venv, with the clone's src/ first
# on PYTHONPATH), RECORD=0 (do not write docs/readme_timings.md).
#
# CPU = user + sys of the command and the child processes it waited for (extraction workers, training
# workers). On a shared machine wall time depends on the load, which is printed before and after each
# step: read CPU time as the stable number, wall time with its load average.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
src=${SRC:-$here}
out=${OUT:-/tmp/parrot-readme}
shared=${SHARED:-$(cd "$here/.." && pwd)/shared}
targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(all)
want() { local t; for t in "${targets[@]}"; do [[ $t == all || $t == "$1" ]] && return 0; done; return 1; }

rm -rf "$out"
mkdir -p "$out"
ln -s "$shared" "$out/shared"   # the clone sees ../shared/data/emodb exactly as the README writes it
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
export PARROT_PROGRESS_SECONDS=600  # logs without a progress line every 30 s
rows=()
load() { cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo "?"; }

step() {  # step NAME CMD...   (runs in the clone; its output goes to $out/logs/NAME.log)
  local name=$1; shift
  local before after log="$out/logs/${name//[^A-Za-z0-9._-]/_}.log"
  mkdir -p "$out/logs"
  before=$(load)
  if ! (cd "$out/parrot-ser" && /usr/bin/time -f "%e %U %S" -o "$out/.t" "$@") > "$log" 2>&1; then
    echo "$name: FAILED, see $log" >&2
    rows+=("| $name | FAILED: $(grep -v '^Command exited' "$log" | tail -1 | cut -c1-150) | | $before |")
    return 0  # the other steps still run and are recorded
  fi
  after=$(load)
  local row
  row=$(read -r wall user sys < "$out/.t"; awk -v n="$name" -v w="$wall" -v u="$user" -v s="$sys" -v b="$before" \
    -v a="$after" 'function t(x) { return x < 90 ? sprintf("%.0f s", x) : sprintf("%d min %02d s", x / 60, x % 60) }
    BEGIN { printf "| %s | %s | %s | %s / %s |", n, t(u + s), t(w), b, a }')
  rows+=("$row")
  echo "$row"
}

git clone --quiet "$src" "$out/parrot-ser"
commit=$(git -C "$out/parrot-ser" rev-parse --short HEAD)
cores=$(getconf _NPROCESSORS_ONLN)  # not nproc: it obeys OMP_NUM_THREADS
echo "clone of $src at $commit into $out/parrot-ser; $cores cores; $(date -u '+%F %H:%M UTC')"

if [[ -n ${REUSE_VENV:-} ]]; then
  export PATH="$REUSE_VENV/bin:$PATH" PYTHONPATH="$out/parrot-ser/src"
  echo "(installs skipped: $REUSE_VENV with the clone's src on PYTHONPATH)"
else
  if want quickstart || want demo || want workflow || want real; then
    step "quick start: venv + pip install torch==2.13.0" bash -c 'python3 -m venv .venv && .venv/bin/pip install -q torch==2.13.0'
    step "quick start: pip install -c constraints.txt -e \".[all,dev]\"" .venv/bin/pip install -q -c constraints.txt -e ".[all,dev]"
    step "quick start: pip install --no-deps hearvalidator==2021.0.2" .venv/bin/pip install -q --no-deps hearvalidator==2021.0.2
  fi
  export PATH="$out/parrot-ser/.venv/bin:$PATH"
fi
(cd "$out/parrot-ser" && python -c "import parrot_ser, torch; print('parrot_ser from', parrot_ser.__file__, '| torch', torch.__version__)")

if want demo || want demo-quick; then
  step "parrot-ser demo --quick" parrot-ser demo --quick --out work/demo-quick
fi
if want demo; then
  step "parrot-ser demo" parrot-ser demo
fi

if want workflow; then
  emodb=../shared/data/emodb
  step "1. corpus inspect --check-audio" parrot-ser corpus inspect $emodb --corpus emodb --check-audio
  step "1. corpus manifest" parrot-ser corpus manifest $emodb --corpus emodb -o work/emodb.csv
  step "2. extract logmel" parrot-ser extract $emodb --corpus emodb -e logmel --out work/feats
  step "2. extract ssam-tiny + hubert-base --random-init" parrot-ser extract $emodb --corpus emodb -e ssam-tiny \
    -e hubert-base --random-init --out work/feats
  step "3. train parrot-token, 3 seeds x 5 folds" parrot-ser train --features work/feats --encoder ssam-tiny \
    --encoder hubert-base --model parrot-token --seeds 0,1,2 --out work/runs/parrot-token
  step "5. export (one model refit on all the data)" parrot-ser export work/runs/parrot-token --out work/model
  step "5. predict one clip --json (load + predict)" parrot-ser predict work/model $emodb/wav/03a01Fa.wav --json
  step "5. one more clip after load (scripts/predict_latency.py)" python scripts/predict_latency.py work/model \
    $emodb/wav/03a01Fa.wav $emodb/wav/03a01Nc.wav $emodb/wav/03a01Wa.wav $emodb/wav/03a02Fc.wav
  tail -1 "$out/logs/5._one_more_clip_after_load__scripts_predict_latency.py_.log"
  port=$((20000 + RANDOM % 20000))
  (cd "$out/parrot-ser" && exec parrot-ser serve work/model --port $port) > "$out/logs/serve.log" 2>&1 &
  server=$!
  for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$port/health" > /dev/null && break; sleep 1; done
  step "5. curl POST /v1/predict (served model)" curl -sf -F file=@$emodb/wav/03a01Fa.wav \
    "http://127.0.0.1:$port/v1/predict"
  kill "$server"; wait "$server" 2>/dev/null || true
fi

if want real; then
  step "real: extract whisper-base, every layer" parrot-ser extract ../shared/data/emodb --corpus emodb \
    -e whisper-base --layers all --checkpoint whisper-base=../shared/models/whisper-base \
    --option whisper-base:window=clip --out work/feats-layers
  step "real: train fcn on whisper-base layer 2, 3 seeds x 5 folds" parrot-ser train --features work/feats-layers \
    --encoder whisper-base --layer 2 --model fcn --seeds 0,1,2 --epochs 30 --patience 5 --out work/runs/whisper-l2
  real_result=$(python - "$out/parrot-ser/work/runs/whisper-l2/results.json" <<'PY'
import json, sys
h = json.load(open(sys.argv[1]))["headline"]
print(f"whisper-base layer 2, fcn: accuracy {h['accuracy']['mean']:.2f} ± {h['accuracy']['std']:.2f} %, "
      f"macro-F1 {h['macro_f1']['mean']:.2f} ± {h['macro_f1']['std']:.2f} % (mean ± std over 5 speaker folds)")
PY
)
  echo "real: $real_result"
fi

if want labels; then
  emodb=../shared/data/emodb
  note="arousal/valence derived from the acted emotion, NOT a real result"
  step "labels: scripts/emodb_levels.py" python scripts/emodb_levels.py $emodb work/levels.csv
  step "labels: extract logmel with targets" parrot-ser extract work/levels.csv --corpus csv \
    --corpus-option targets=arousal,valence --corpus-option "note=$note" -e logmel --out work/feats-levels
  for task in classification regression multitask; do
    step "labels: train fcn --task $task" parrot-ser train --features work/feats-levels --encoder logmel \
      --model fcn --epochs 20 --task $task --out work/runs/labels-$task
  done
  labels_result=$(cd "$out/parrot-ser" && python - <<'PY'
import json
def f(h, k, d=2):
    return f"{k} {h[k]['mean']:.{d}f} ± {h[k]['std']:.{d}f}"
for task in ("classification", "regression", "multitask"):
    h = json.load(open(f"work/runs/labels-{task}/results.json"))["headline"]
    parts = [f(h, k) for k in ("accuracy", "ua", "macro_f1") if k in h]
    parts += [f(h, k, 3) for k in ("ccc", "ccc_arousal", "ccc_valence") if k in h]
    print(f"- {task}: " + ", ".join(parts))
PY
)
  echo "labels:"; echo "$labels_result"
fi

if [[ ${RECORD:-1} != 0 ]]; then
  doc="$here/docs/readme_timings.md"
  {
    echo "# Timings of the README's commands"
    echo
    echo "Written by \`bash scripts/time_readme.sh ${targets[*]}\` on $(date -u '+%F %H:%M UTC'): a fresh clone of"
    echo "commit \`$commit\`, $cores cores, OMP_NUM_THREADS=$OMP_NUM_THREADS$([[ -n ${REUSE_VENV:-} ]] && echo ", installs skipped (the venv $REUSE_VENV, made by the quick start's commands)")."
    echo "CPU = user + sys of the command and its worker processes: the stable number. Wall time depends on"
    echo "what else runs: the 1-minute load average before / after each step says how busy the machine was."
    echo
    echo "| step | CPU | wall | load before / after |"
    echo "|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
    for f in "$out"/logs/5._one_more_clip*.log; do [[ -f $f ]] && { echo; echo "One more clip after load: $(tail -1 "$f")"; }; done
    [[ -n ${real_result:-} ]] && { echo; echo "Real-weights result of this run: $real_result."; }
    [[ -n ${labels_result:-} ]] && { echo; echo "Headlines of the README's labels block in this run (the README prints the same):"; echo; echo "$labels_result"; }
    true
  } > "$doc"
  echo "wrote $doc"
fi
