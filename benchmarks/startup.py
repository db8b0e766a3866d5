"""Prediction start-up: wall time of ``tools/predict.py`` for one file, and where it goes.

    nice -n 10 .venv/bin/python benchmarks/startup.py --model EXPORT_DIR --audio FILE.wav [--rounds 5]

Table 1: wall time of the whole CLI (fresh process each time) with ``--runtime mxnet`` and
``--runtime onnxruntime`` (the folder needs model.onnx: ``tools/export.py --onnx``), rounds
interleaved, median (min..max) and the per-round ratio.  Table 2: one fresh process timing its
own stages in order: the emotion_mx predict module, ``import mxnet``, ``import onnxruntime``,
``import librosa``, the first and the second feature extraction (the first pays numba's JIT
unless its cache is warm), model load and one prediction per runtime.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

STAGES = r'''
import json, os, sys, time
sys.path.insert(0, {root!r})
out = {{}}
def tick(name, t0):
    out[name] = round((time.perf_counter() - t0) * 1e3, 1)
t = time.perf_counter(); from emotion_mx.inference.predict import Predictor, media_item; tick("import emotion_mx predict", t)
t = time.perf_counter(); import mxnet; tick("import mxnet", t)
t = time.perf_counter(); import onnxruntime; tick("import onnxruntime", t)
t = time.perf_counter(); import librosa; tick("import librosa", t)
preds = {{}}
for rt in ("mxnet", "onnxruntime"):
    t = time.perf_counter(); preds[rt] = Predictor({model!r}, runtime=rt); tick(f"load model ({{rt}})", t)
item, root = media_item(audio={audio!r})
t = time.perf_counter(); f = preds["mxnet"].features(item, root); tick("features, first call", t)
t = time.perf_counter(); f = preds["mxnet"].features(item, root); tick("features, second call", t)
for rt, p in preds.items():
    p.predict_features([f]); t = time.perf_counter(); p.predict_features([f]); tick(f"predict ({{rt}})", t)
print(json.dumps(out))
'''


def _fmt(xs):
    return f"{statistics.median(xs):.2f} ({min(xs):.2f}..{max(xs):.2f})"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--audio", required=True)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    env = dict(os.environ, PYTHONPATH=ROOT)
    walls = {"mxnet": [], "onnxruntime": []}
    for _ in range(args.rounds):
        for rt in walls:
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "tools/predict.py", "--model", args.model, "--audio", args.audio,
                                "--json", "--runtime", rt], cwd=ROOT, env=env, capture_output=True, text=True)
            if r.returncode:
                sys.exit(r.stderr[-2000:])
            walls[rt].append(time.perf_counter() - t0)
    print(f"# medians (min..max) over {args.rounds} interleaved rounds; NUMBA_CACHE_DIR="
          f"{os.environ.get('NUMBA_CACHE_DIR')}\n")
    print("| tools/predict.py, one audio file | wall s |\n|---|---|")
    for rt, xs in walls.items():
        print(f"| --runtime {rt} | {_fmt(xs)} |")
    ratio = [a / b for a, b in zip(walls["mxnet"], walls["onnxruntime"])]
    print(f"| mxnet / onnxruntime | {_fmt(ratio)}x |")
    stages = []
    for _ in range(args.rounds):
        r = subprocess.run([sys.executable, "-c", STAGES.format(root=ROOT, model=args.model, audio=args.audio)],
                           cwd=ROOT, env=env, capture_output=True, text=True)
        if r.returncode:
            sys.exit(r.stderr[-2000:])
        stages.append(json.loads(r.stdout.strip().splitlines()[-1]))
    print("\n| stage (one fresh process, in this order) | ms |\n|---|---|")
    for k in stages[0]:
        print(f"| {k} | {_fmt([s[k] for s in stages])} |")


if __name__ == "__main__":
    main()
