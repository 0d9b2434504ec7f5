#!/usr/bin/env bash
# One short GPU check of the bundled trainers (under 4 minutes): makes the sample corpora, builds
# Uni-MER and the migrated LLP labels, trains both models briefly with --device cuda, prints
# UF1/UAR, the AVVP test numbers and the training throughput (samples/s, data-wait share).
#
#   bash benchmarks/cuda_check.sh            # on a GPU machine
#   bash benchmarks/cuda_check.sh cpu        # the same steps on the CPU (a dry run)
#
# Run from the repository root; uses .venv/bin/mertk when present, else `mertk` on PATH.
set -euo pipefail

DEVICE="${1:-cuda}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [ -x "$ROOT/.venv/bin/mertk" ]; then BIN="$ROOT/.venv/bin"; else BIN="$(dirname "$(command -v mertk)")"; fi
MERTK="$BIN/mertk"
PYTHON="$BIN/python"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/mertk_cuda_check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
START=$(date +%s)
step() { echo "== [$(( $(date +%s) - START )) s] $*"; }

step "device"
"$PYTHON" - "$DEVICE" <<'EOF'
import sys, torch
device = sys.argv[1]
print(f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}", end="")
print(f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "")
if device == "cuda" and not torch.cuda.is_available():
    sys.exit("no CUDA device: run `bash benchmarks/cuda_check.sh cpu` for the CPU dry run")
EOF

step "sample corpora"
"$MERTK" sample-data casme2 --out "$WORK/casme2" --subjects 8 --samples-per-subject 8
"$MERTK" sample-data llp --out "$WORK/llp"

step "pipelines: build-unimer, migrate-labels"
"$MERTK" build-unimer --casme2 "$WORK/casme2" --out "$WORK/out" --no-report > "$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; exit 1; }
"$MERTK" migrate-labels --llp "$WORK/llp" --out "$WORK/out" > "$WORK/migrate.log" 2>&1 || { cat "$WORK/migrate.log"; exit 1; }

step "train mer --device $DEVICE (8 LOSO folds, 10 epochs)"
"$MERTK" train mer "$WORK/out/unimer" --out "$WORK/run_mer" --epochs 10 --device "$DEVICE"

step "train avvp --device $DEVICE (migrated labels, then weak only; 8 epochs)"
"$MERTK" train avvp --llp "$WORK/llp" --labels "$WORK/out/avvp_pseudo" --out "$WORK/run_avvp" --epochs 8 --device "$DEVICE" --cache-dir "$WORK/cache"
"$MERTK" train avvp --llp "$WORK/llp" --labels none --out "$WORK/run_avvp_weak" --epochs 8 --device "$DEVICE" --cache-dir "$WORK/cache"

step "figures"
"$PYTHON" - "$WORK" <<'EOF'
import json, sys
from pathlib import Path
work = Path(sys.argv[1])
mer = json.loads((work / "run_mer" / "metrics.json").read_text())
mer["throughput"] = json.loads((work / "run_mer" / "_throughput.json").read_text())
print(f"mer  ({mer['device']}): UF1 {mer['pooled']['uf1']:.3f} UAR {mer['pooled']['uar']:.3f}; "
      f"{mer['throughput']['samples_per_second']} samples/s, data wait {100 * mer['throughput']['data_wait_share']:.1f}%")
for name in ("run_avvp", "run_avvp_weak"):
    m = json.loads((work / name / "metrics.json").read_text())
    m["throughput"] = json.loads((work / name / "_throughput.json").read_text())
    s = m["test"]["segment"]
    print(f"avvp ({m['device']}, labels {'migrated' if m['labels'] != 'none' else 'none'}): test segment Type@AV {s['type']:.1f} "
          f"Event@AV {s['event']:.1f}; {m['throughput']['samples_per_second']} samples/s, "
          f"data wait {100 * m['throughput']['data_wait_share']:.1f}%")
EOF

step "benchmark (bench_train.py, 3 epochs)"
"$PYTHON" "$ROOT/benchmarks/bench_train.py" --device "$DEVICE" --epochs 3 --llp "$WORK/llp" | head -2
step "done"
