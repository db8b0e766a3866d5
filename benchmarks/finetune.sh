#!/usr/bin/env bash
# Issue 12: the pretrained encoders fine-tuned end to end, through the CLIs, on the shared data
# (speaker/subject/writer-independent folds; each run selects its epoch on its fold's validation
# split, the test split is read once).  Resumable: re-running skips finished folds.
#   EMOTION_MX_DATA=../shared/data bash benchmarks/finetune.sh [WORK_DIR] [TARGETS]
# TARGETS: any of emodb ckplus48 isear iemocap_text trimodal (default: all).  Cost measured on a
# shared 2-core AVX2 machine (see benchmarks/results.md): EmoDB ~8 min per fold (Whisper tiny.en,
# 12 epochs), CK+48 ~1 min per fold, ISEAR 10-14 min per fold (2 epochs), IEMOCAP text ~12 min
# (one official fold); trimodal (mid_pretrained) was not run.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${EMOTION_MX_DATA:?set EMOTION_MX_DATA to the folder holding emodb/, ckplus48/, isear/, iemocap_text/}
WORK=${1:-work}
TARGETS=${2:-emodb ckplus48 isear iemocap_text trimodal}
EMX=${EMX:-.venv/bin/emotion-mx}

for t in $TARGETS; do
  case $t in
    emodb)
      $EMX build --config configs/datasets/emodb_pretrained.yaml --root "$DATA/emodb" --out "$WORK/stores/emodb_pt" --workers 2 --quiet
      $EMX crossval --config configs/train/pretrained/emodb_whisper.yaml --data "$WORK/stores/emodb_pt" --out "$WORK/cv_ft/emodb_whisper" --quiet ;;
    ckplus48)
      $EMX build --config configs/datasets/ckplus48_pretrained.yaml --root "$DATA/ckplus48" --out "$WORK/stores/ckplus64" --quiet
      $EMX crossval --config configs/train/pretrained/ckplus_fer.yaml --data "$WORK/stores/ckplus64" --out "$WORK/cv_ft/ckplus_fer" --quiet ;;
    isear)
      $EMX build --config configs/datasets/isear.yaml --root "$DATA/isear" --out "$WORK/stores/isear" --quiet
      $EMX crossval --config configs/train/pretrained/isear_minilm.yaml --data "$WORK/stores/isear" --out "$WORK/cv_ft/isear_minilm" --quiet ;;
    iemocap_text)
      $EMX build --config configs/datasets/iemocap_text.yaml --root "$DATA/iemocap_text" --out "$WORK/stores/iemocap_text" --quiet
      $EMX crossval --config configs/train/pretrained/isear_minilm.yaml --data "$WORK/stores/iemocap_text" --out "$WORK/cv_ft/iemocap_text_minilm" --quiet ;;
    trimodal)
      $EMX build --config configs/datasets/trimodal_pretrained.yaml --root "$DATA" --out "$WORK/stores/trimodal_pt" --workers 2 --quiet
      $EMX crossval --config configs/train/pretrained/trimodal_mid.yaml --data "$WORK/stores/trimodal_pt" --out "$WORK/cv_ft/trimodal_mid" --quiet ;;
    *) echo "unknown target $t" >&2; exit 2 ;;
  esac
done
cvs=()
for d in emodb_whisper ckplus_fer isear_minilm iemocap_text_minilm trimodal_mid; do
  [ -f "$WORK/cv_ft/$d/results.json" ] && cvs+=("$WORK/cv_ft/$d")
done
.venv/bin/python benchmarks/collect_cv.py --title "Pretrained encoders, fine-tuned (benchmarks/finetune.sh)" "${cvs[@]}"
