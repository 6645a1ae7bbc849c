#!/usr/bin/env bash
# The one check to run when a machine with an NVIDIA GPU is lent (x86_64, CUDA 13 driver):
# installs what the GPU paths need (requirements-gpu.txt: TensorRT), runs the gpu and
# tensorrt tests and the GPU rows of the embedder, detector and attention benchmarks, and
# writes ONE results file (JSON: every step's command, exit status, seconds and output tail,
# plus nvidia-smi, the git commit and the load average). Budget: under 8 minutes.
#
#   tools/gpu_check.sh [--out DIR]     # on the GPU machine (after `make setup`)
#   tools/gpu_check.sh --dry-run       # anywhere: the plan, the scripts and flags checked,
#                                      # the CPU halves run at minimum size (~1 min on 2 cores)
#
# Results: DIR/gpu_check.json (default DIR: runs/gpu_check) and one log per step beside it.
# The attention step adds its GPU cells to docs/attention_study_speed_cells.json and rewrites
# docs/attention_study.md (commit those two with the results file).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
DRY=0
OUT=runs/gpu_check
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --out) OUT=${2:?--out needs a folder}; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$OUT"
RUN=(tools/env.sh)
PY=(tools/env.sh python)
START=$(date +%s)
STEPS_TSV="$OUT/steps.tsv"
: > "$STEPS_TSV"

# name | timeout s | command (GPU run)
PLAN=(
  "install|100|${RUN[*]} pip install -r requirements-gpu.txt"
  "tests|100|${PY[*]} -m pytest -p no:launch_testing -p no:launch_ros -m 'gpu or tensorrt' -rs -q test/core"
  "embedder|120|${PY[*]} -m benchmarks.bench_embedder --gpu-only --gpu-archs ViT-B-16 --gpu-batches 1 8 32 --seconds 1"
  "detector|70|${PY[*]} -m benchmarks.bench_detector --no-int8 --frames 20"
  "attention|80|${PY[*]} -m benchmarks.attention_study --only speed --quick"
)
# the same steps on the CPU at minimum size (dry run): what can be checked without a GPU
DRY_PLAN=(
  "tests|120|${PY[*]} -m pytest -p no:launch_testing -p no:launch_ros -m 'gpu or tensorrt' -rs -q test/core"
  "embedder|120|${PY[*]} -m benchmarks.bench_embedder --archs PS-Tiny-ViT --batches 1 --variants torch --seconds 0.1"
  "attention|60|${PY[*]} -m benchmarks.study_cells speed '{\"arch\":\"PS-MobileNetV4-S\",\"attention\":{\"kind\":\"sdpa\"},\"size\":[384,128],\"batches\":[1],\"min_s\":0.1,\"max_iters\":1,\"device\":\"cpu\"}'"
)
# script -> flags the GPU plan uses (the dry run checks that each still exists)
FLAGS=(
  "benchmarks.bench_embedder|--gpu-only --gpu-archs --gpu-batches --seconds --archs --batches --variants"
  "benchmarks.bench_detector|--no-int8 --frames"
  "benchmarks.attention_study|--only --quick"
)

log() { echo "[gpu_check] $*"; }

run_step() {  # name timeout command...
  local name=$1 limit=$2; shift 2
  local t0 rc
  t0=$(date +%s.%N)
  log "step $name (at most ${limit}s): $*"
  timeout --kill-after=10 "$limit" bash -c "$*" > "$OUT/$name.log" 2>&1
  rc=$?
  local secs
  secs=$(python3 -c "import time; print(round(time.time() - $t0, 1))")
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$secs" "$*" >> "$STEPS_TSV"
  tail -n 3 "$OUT/$name.log" | sed 's/^/    /'
  [ "$rc" = 124 ] && log "step $name timed out after ${limit}s"
  return 0
}

if [ "$DRY" = 1 ]; then
  log "dry run: the plan on a GPU machine (budget 480 s):"
  for s in "${PLAN[@]}"; do IFS='|' read -r n t c <<< "$s"; printf '  %-10s %4ss  %s\n' "$n" "$t" "$c"; done
  total=0; for s in "${PLAN[@]}"; do IFS='|' read -r _ t _ <<< "$s"; total=$((total + t)); done
  [ "$total" -le 480 ] || { log "FAIL: the steps' limits add up to ${total}s > 480s"; exit 1; }
  missing=0
  for f in requirements-gpu.txt test/core/test_gpu.py test/core/test_tensorrt_gpu.py benchmarks/gpu_rows.py \
           benchmarks/study_cells.py; do
    [ -f "$f" ] || { log "FAIL: $f is missing"; missing=1; }
  done
  for entry in "${FLAGS[@]}"; do
    IFS='|' read -r script flags <<< "$entry"
    [ -f "${script//.//}.py" ] || { log "FAIL: ${script//.//}.py is missing"; missing=1; continue; }
    help=$("${PY[@]}" -m "$script" --help 2>&1) || { log "FAIL: python -m $script --help failed"; missing=1; continue; }
    for fl in $flags; do
      grep -q -- "$fl" <<< "$help" || { log "FAIL: $script has no $fl"; missing=1; }
    done
  done
  [ "$missing" = 0 ] || exit 1
  log "scripts and flags: ok; running the CPU halves at minimum size"
  for s in "${DRY_PLAN[@]}"; do IFS='|' read -r n t c <<< "$s"; run_step "$n" "$t" "$c"; done
else
  if ! command -v nvidia-smi > /dev/null || ! nvidia-smi -L > /dev/null 2>&1; then
    log "no NVIDIA GPU here (nvidia-smi -L failed): nothing to check; try --dry-run"
    exit 2
  fi
  nvidia-smi -L > "$OUT/nvidia-smi.txt" 2>&1
  nvidia-smi >> "$OUT/nvidia-smi.txt" 2>&1
  for s in "${PLAN[@]}"; do IFS='|' read -r n t c <<< "$s"; run_step "$n" "$t" "$c"; done
fi

python3 - "$OUT" "$DRY" "$START" <<'PYEOF'
import json, os, platform, subprocess, sys, time
out, dry, start = sys.argv[1], sys.argv[2] == "1", float(sys.argv[3])
steps = []
for line in open(os.path.join(out, "steps.tsv")):
    name, rc, secs, cmd = line.rstrip("\n").split("\t", 3)
    log = open(os.path.join(out, f"{name}.log"), errors="replace").read().splitlines()
    steps.append({"step": name, "rc": int(rc), "seconds": float(secs), "command": cmd, "tail": log[-40:]})
try:
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
except OSError:
    git = "unknown"
smi = os.path.join(out, "nvidia-smi.txt")
rec = {"dry_run": dry, "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "git": git,
       "machine": platform.node(), "cpu_count": os.cpu_count(), "load_avg": [round(x, 2) for x in os.getloadavg()],
       "gpu": open(smi).read().splitlines()[:2] if os.path.exists(smi) else None,
       "total_seconds": round(time.time() - start, 1), "steps": steps,
       "ok": all(s["rc"] == 0 for s in steps)}
path = os.path.join(out, "gpu_check.json")
with open(path, "w") as fh:
    json.dump(rec, fh, indent=1)
print(f"[gpu_check] {'dry run ' if dry else ''}{'ok' if rec['ok'] else 'FAILED'} in {rec['total_seconds']} s; "
      f"results: {path}")
sys.exit(0 if rec["ok"] else 1)
PYEOF
