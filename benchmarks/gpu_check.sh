#!/usr/bin/env bash
# The GPU checks and figures of docs/BENCHMARKS.md in one command, on a bare GPU machine (about 5 minutes on one
# GPU; nothing downloads, no dataset or weights needed):
#   bash benchmarks/gpu_check.sh [RESULTS_DIR]       (default: $OUT, else runs/gpu_check)
# 1. the `gpu`-marked tests: CPU vs CUDA frontend and pitch/time parity, 16-mixed on CUDA, bf16-mixed fits of both
#    recipes stacked on the ESC-50 config (tests/test_combinations.py, generated data in the ESC-50 layout, weights
#    from a generated weights folder), 2-GPU DDP when there are 2, predict --device cuda against the CPU, a killed
#    and resumed fit on CUDA, bf16-true (tests/test_gpu_paths.py);
# 2. frontend_speed.py --device cuda at batch 32 and 256 (clips/s: vocoder augmentation + frontend, spectral
#    pitch/time + frontend, frontend only);
# 3. input_pipeline.py --device cuda --model densenet201 (samples/s, loader headroom; ImageNet weights when the
#    weights folder has them, else random init) on $AUDIOCLS_ESC50_ROOT, or on generated 5 s clips at 44.1 kHz in
#    the ESC-50 layout when it is unset.
# Each step's output goes to RESULTS_DIR/<step>.txt and the figures to RESULTS_DIR/results.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
RESULTS=${1:-${OUT:-runs/gpu_check}}
ESC50=${AUDIOCLS_ESC50_ROOT:-}
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

step gpu_tests 240 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/
TAIL=3 step frontend_b32 60 "$PY" benchmarks/frontend_speed.py --device cuda --batch 32 --rounds 5 --skip-paper
TAIL=3 step frontend_b256 90 "$PY" benchmarks/frontend_speed.py --device cuda --batch 256 --rounds 3 --skip-paper
ESC10_FLAG=--esc10
if [ -z "$ESC50" ] || [ ! -d "$ESC50/audio" ]; then  # a bare machine: 10 classes x 5 folds x 8 clips of 5 s, generated
    ESC50="$RESULTS/generated_esc50"
    ESC10_FLAG=--no-esc10
    "$PY" -c "import sys; from audiocls.data.synthetic import generate_synthetic as g; g(sys.argv[1], num_classes=10, clips_per_fold=8, sample_rate=44100, seconds=5.0)" "$ESC50"
    echo "== input_pipeline on generated clips in the ESC-50 layout ($ESC50)" | tee -a "$SUMMARY"
fi
TAIL=8 step input_pipeline 150 "$PY" benchmarks/input_pipeline.py --root "$ESC50" "$ESC10_FLAG" --device cuda \
    --model densenet201 --workers "$WORKERS" --epochs 2
echo "summary: $SUMMARY"
cat "$SUMMARY"
exit $status
