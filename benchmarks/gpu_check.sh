#!/usr/bin/env bash
# The GPU figures of docs/BENCHMARKS.md in one command (about 5 minutes on one GPU; nothing downloads):
#   bash benchmarks/gpu_check.sh [RESULTS_DIR]       (default: $OUT, else runs/gpu_check)
# 1. the `gpu`-marked tests (CPU vs CUDA frontend and pitch/time parity);
# 2. frontend_speed.py --device cuda at batch 32 and 256 (clips/s: vocoder augmentation + frontend, spectral
#    pitch/time + frontend, frontend only);
# 3. input_pipeline.py --device cuda --model densenet201 (samples/s, loader headroom; random init).
# Set ESC10=/path/to/esc10 (ESC-50 layout) for real clips; without it step 2 uses synthetic tones and step 3 is
# skipped. Each step's output goes to RESULTS_DIR/<step>.txt and the figures to RESULTS_DIR/results.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
RESULTS=${1:-${OUT:-runs/gpu_check}}
ESC10=${ESC10:-../shared/datasets/esc10}
WORKERS=${WORKERS:-8}
mkdir -p "$RESULTS"
SUMMARY="$RESULTS/results.txt"
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: no CUDA device visible to torch on $(hostname); run this on a GPU machine" | tee "$SUMMARY" >&2
    exit 2
fi
{
    echo "gpu_check $(date -u +%Y-%m-%dT%H:%MZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    "$PY" -c 'import torch; print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__, "| CUDA", torch.version.cuda)'
    echo "uptime: $(uptime)"
} > "$SUMMARY"
status=0

step() {  # step NAME TIMEOUT_S COMMAND...: run, keep the output, append its last lines to the summary
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*" | tee -a "$SUMMARY"
    timeout "$limit" "$@" > "$RESULTS/$name.txt" 2>&1
    local rc=$?
    tail -n "${TAIL:-4}" "$RESULTS/$name.txt" >> "$SUMMARY"
    echo "   exit $rc" >> "$SUMMARY"
    [ "$rc" -eq 0 ] || status=1
}

step gpu_tests 90 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/
TAIL=3 step frontend_b32 60 "$PY" benchmarks/frontend_speed.py --device cuda --batch 32 --rounds 5 --skip-paper
TAIL=3 step frontend_b256 90 "$PY" benchmarks/frontend_speed.py --device cuda --batch 256 --rounds 3 --skip-paper
if [ -d "$ESC10/audio" ]; then
    TAIL=8 step input_pipeline 150 "$PY" benchmarks/input_pipeline.py --root "$ESC10" --device cuda \
        --model densenet201 --workers "$WORKERS" --epochs 2
else
    echo "== input_pipeline: skipped, no ESC-10 clips under $ESC10 (set ESC10=...)" | tee -a "$SUMMARY"
fi
echo "summary: $SUMMARY"
cat "$SUMMARY"
exit $status
