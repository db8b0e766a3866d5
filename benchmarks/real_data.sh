#!/usr/bin/env bash
# Real-data results of the README, end to end from the CLIs (resumable: re-running skips what is done).
#   EMOTION_MX_DATA=../shared/data bash benchmarks/real_data.sh [WORK_DIR]
# 1. EmoDB audio-only, 7 classes, 5 speaker-independent folds (2 test speakers per fold):
#    audio_cnn with 2 conv blocks / 30 epochs (emodb_audio.yaml) and 3 blocks / 60 epochs
#    (emodb_audio_cnn3.yaml, chosen by validation UA).
# 2. Composed EmoDB + CK+48 + ISEAR (5 shared classes, 5 folds): every modality alone and every
#    fusion type, same folds, same recipe, at two sizes: the tiny tier (every row uses the same
#    mid/early/late_tiny encoders) and the base tier (the unimodal presets vs *_base fusion; about
#    25 minutes per fusion row on 2 cores), and the unimodal-experts tier (late_base as a product
#    of experts, mid_base with experts as a residual or a cross-modal expert;
#    configs/train/trimodal_experts/).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${EMOTION_MX_DATA:?set EMOTION_MX_DATA to the folder holding emodb/, ckplus48/, isear/}
WORK=${1:-work}
PY=${PY:-.venv/bin/python}

$PY tools/build_dataset.py --config configs/datasets/emodb.yaml --root "$DATA/emodb" --out "$WORK/emodb" --workers 2 --quiet
$PY tools/build_dataset.py --config configs/datasets/trimodal.yaml --root "$DATA" --out "$WORK/trimodal" --workers 2 --quiet

$PY tools/crossval.py --config configs/train/emodb_audio.yaml --data "$WORK/emodb" --out "$WORK/cv_emodb" --folds all --seeds 0 --quiet
$PY tools/crossval.py --config configs/train/emodb_audio_cnn3.yaml --data "$WORK/emodb" --out "$WORK/cv_emodb_cnn3" --folds all --seeds 0 --quiet
for m in audio text video early mid late; do
  $PY tools/crossval.py --config configs/train/trimodal/$m.yaml --data "$WORK/trimodal" --out "$WORK/cv_trimodal/$m" --folds all --seeds 0 --quiet
done
for m in text video audio mid late early; do
  $PY tools/crossval.py --config configs/train/trimodal_base/$m.yaml --data "$WORK/trimodal" --out "$WORK/cv_trimodal_base/$m" --folds all --seeds 0 --quiet
done
for m in late mid mid_cross; do
  $PY tools/crossval.py --config configs/train/trimodal_experts/$m.yaml --data "$WORK/trimodal" --out "$WORK/cv_trimodal_experts/$m" --folds all --seeds 0 --quiet
done
# 3. Distillation of the fold-0 product-of-experts model into mid_student, without and with
#    feature matching (--resume: a finished student is reported again, not retrained).
for fw in 0 50; do
  $PY tools/distill.py --teacher "$WORK/cv_trimodal_experts/late/fold0-seed0" --student mid_student \
      --data "$WORK/trimodal" --out "$WORK/distill/late_f0_fw$fw" --feature-weight $fw --resume --quiet
done
$PY benchmarks/collect_cv.py --title "EmoDB, audio only (audio_cnn), 5 speaker-independent folds" "$WORK/cv_emodb" "$WORK/cv_emodb_cnn3"
$PY benchmarks/collect_cv.py --title "EmoDB + CK+48 + ISEAR (composed), 5 classes, 5 folds" \
    "$WORK"/cv_trimodal/{audio,text,video,early,mid,late}
$PY benchmarks/collect_cv.py --title "EmoDB + CK+48 + ISEAR (composed), base tier, 5 folds" \
    "$WORK"/cv_trimodal_base/{audio,text,video,early,mid,late}
$PY benchmarks/collect_cv.py --title "EmoDB + CK+48 + ISEAR (composed), unimodal experts, 5 folds" \
    "$WORK"/cv_trimodal_base/audio "$WORK"/cv_trimodal_experts/{late,mid,mid_cross}
