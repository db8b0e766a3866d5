"""Zoo models as a user meets them: warm latency of one prediction and the first call in a new process.

    EMOTION_MX_DATA=../shared/data nice -n 10 .venv/bin/python benchmarks/zoo.py [--rounds 50] [--starts 3]

Table 1, per zoo model and runtime (MXNet, ONNX Runtime): p50 / p95 of ``EmotionRecognizer.predict``
on one real input (a 4 s RAVDESS clip, one CK+48 face, one sentence; the multimodal model gets all
three), after one warm-up call, ``--rounds`` calls.  Table 2: wall time of a new Python process that
loads the zoo model (artifacts already cached) and predicts once (``--starts`` processes per model,
median), with the default runtime.  The CPU's ISA flags are printed beside the tables.
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

FIRST_CALL = r'''
import time; t = time.perf_counter()
from emotion_mx import EmotionRecognizer
rec = EmotionRecognizer.pretrained({name!r})
r = rec.predict(**{inputs!r})
print(round(time.perf_counter() - t, 3), rec.runtime, r.label)
'''


def inputs_for(data):
    wav = sorted(glob.glob(os.path.join(data, "ravdess", "Actor_01", "03-01-05-02-01-01-01.wav")))[0]
    face = sorted(glob.glob(os.path.join(data, "ckplus48", "happy", "*.png")))[0]
    text = "I can't believe you did that, I'm really upset with you."
    return {"speech": {"audio": wav}, "face": {"image": face}, "text": {"text": text},
            "multimodal": {"audio": wav, "image": face, "text": text}}


def warm_latency(name, inputs, runtime, rounds):
    from emotion_mx import EmotionRecognizer
    rec = EmotionRecognizer.pretrained(name, runtime=runtime)
    rec.predict(**inputs)
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        rec.predict(**inputs)
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--starts", type=int, default=3)
    ap.add_argument("--models", default="speech,text,face,multimodal")
    args = ap.parse_args()
    data = os.environ.get("EMOTION_MX_DATA")
    if not data:
        sys.exit("set EMOTION_MX_DATA to the shared data folder")
    from emotion_mx.deploy.pipeline import cpu_info
    from emotion_mx.zoo import ensure_exported
    info = cpu_info()
    print(f"CPU: {info['model']}, {info['cores']} cores, flags: {' '.join(info['flags'])}; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    inputs = inputs_for(data)
    names = args.models.split(",")
    for n in names:
        ensure_exported(n)                           # assembly is not part of any figure below
    print("\n| zoo model | input | MXNet p50 / p95 ms | ONNX Runtime p50 / p95 ms |\n|---|---|---|---|")
    for n in names:
        row = []
        for rt in ("mxnet", "onnxruntime"):
            try:
                p50, p95 = warm_latency(n, inputs[n], rt, args.rounds)
                row.append(f"{p50:.1f} / {p95:.1f}")
            except Exception as e:              # e.g. no model.onnx: said in the table
                row.append(f"n/a ({str(e).splitlines()[0][:60]})")
        print(f"| {n} | {', '.join(inputs[n])} | {row[0]} | {row[1]} |")
    print("\n| zoo model | first call in a new process, s (median of "
          f"{args.starts}) | runtime |\n|---|---|---|")
    for n in names:
        walls, rts = [], set()
        for _ in range(args.starts):
            t = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", FIRST_CALL.format(name=n, inputs=inputs[n])],
                                 capture_output=True, text=True, cwd=ROOT, timeout=600)
            walls.append(time.perf_counter() - t)
            if out.returncode:
                raise SystemExit(out.stderr)
            rts.add(out.stdout.split()[1])
        print(f"| {n} | {statistics.median(walls):.2f} ({min(walls):.2f}..{max(walls):.2f}) | {', '.join(sorted(rts))} |")
    print(json.dumps({"cpu": info, "rounds": args.rounds}))


if __name__ == "__main__":
    main()
