#!/usr/bin/env bash
# Small architecture search on real data (EmoDB, speech only, fold 0), for benchmarks/search_report.md.
#   bash benchmarks/search_real.sh [STORE] [OUT] [TRIALS]
# STORE is a finished feature store of EmoDB: tools/build_dataset.py --config configs/datasets/emodb.yaml
# (work/emodb here). Trials select on fold 0's VALIDATION split; test is never read.
# Run it again with the same arguments to continue an interrupted search.
set -euo pipefail
cd "$(dirname "$0")/.."
STORE="${1:-work/emodb}"
OUT="${2:-work/search-emodb}"
TRIALS="${3:-8}"
PY="${PYTHON:-.venv/bin/python}"
/usr/bin/time -f "wall %e s, max RSS %M KB" \
  "$PY" tools/search.py --config configs/search/emodb_audio.yaml --data "$STORE" --trials "$TRIALS" \
    --out "$OUT" --searcher random --scheduler local --fold 0 --seed 0
cat "$OUT/leaderboard.md"
