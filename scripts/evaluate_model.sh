#!/usr/bin/env bash
# The model card's evaluation: a generator vs the static baseline vs the real videos, on the s1 test
# split (100 clips) and the unseen speaker s31 (10 clips), in the paper's Table 6 columns.
#
#   bash scripts/evaluate_model.sh [CHECKPOINT] [DATA] [OUT]
#
# CHECKPOINT defaults to the shipped model, DATA to /work/data_cache/grid (`speech-anim preprocess`
# output), OUT to runs/eval; SETS="s31" (or "s1_test") evaluates one of the two only. Reports already in OUT are kept (delete one to redo it). On one free
# CPU core a 100-clip row takes ~15 min (the static baseline ~6), most of it dlib face descriptors (ACD).
set -euo pipefail
# One OpenMP thread per process: beside a training run, torch's default threads spin-waited and made
# `speech-anim evaluate` 30-100x slower (270 s a clip instead of 3-20 s).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
CHECKPOINT=${1:-speech_anim/pretrained/grid-s1}
DATA=${2:-/work/data_cache/grid}
OUT=${3:-runs/eval}
SPLITS=speech_anim/data/splits
mkdir -p "$OUT"

report() {  # report NAME ARGS...: run `speech-anim evaluate` unless NAME.json exists
  local name=$1; shift
  [[ -f $OUT/$name.json ]] || speech-anim evaluate "$@" --out "$OUT/$name.json" --csv "$OUT/$name.csv"
}

SETS=${SETS:-s1_test s31}
for set in s1_test:test:s1:grid_test.txt s31:unseen:s31:grid_unseen.txt; do
  IFS=: read -r label split speaker ids <<<"$set"
  [[ " $SETS " == *" $label "* ]] || continue
  [[ -d $OUT/gen_$label ]] || python scripts/generate_eval_set.py --data "$DATA" --split "$split" \
      --out "$OUT/gen_$label" --checkpoint "$CHECKPOINT"
  report "model_$label" --generated "$OUT/gen_$label/$speaker" --reference "$DATA/clips/$speaker" --ids "$SPLITS/$ids"
  report "static_$label" --baseline static --reference "$DATA/clips/$speaker" --ids "$SPLITS/$ids"
  report "real_$label" --generated "$DATA/clips/$speaker" --reference "$DATA/clips/$speaker" --ids "$SPLITS/$ids"
  echo "## $label"
  python scripts/evaluation_tables.py "model=$OUT/model_$label.json" "static baseline=$OUT/static_$label.json" \
      "real video=$OUT/real_$label.json"
done
