"""ONNX Runtime INT8 variants against ORT fp32, same process, interleaved rounds.

    nice -n 10 .venv/bin/python benchmarks/ort_int8.py [--model audio_cnn --model mid_tiny] \\
        [--threads 2] [--rounds 5] [--repeats 10] [--variant NAME ...] [--profile]

Per model (random weights at the demo's input sizes: speed does not depend on the weights;
agreement is measured on random inputs against ORT fp32), the fp32 export goes through
``export_onnx`` and then through each INT8 variant of :data:`VARIANTS` (QDQ vs QOperator, U8S8 vs
S8S8, per-tensor vs per-channel weights, ORT's ``quant_pre_process`` or not, which op types).
All sessions run with the same explicit thread settings (``--threads`` intra-op threads, no
spinning unless ``--spin``) and are timed at batch 1 and 32 in interleaved rounds
(:func:`emotion_mx.deploy.ort_runtime.compare_latency`).  ``--profile`` adds ORT's per-op-type
profile of fp32 and of each variant at batch 1 (what ran, after ORT's fusions).
"""
import argparse
import collections
import json
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

from emotion_mx import artifacts as A  # noqa: E402
from emotion_mx.deploy.onnx_export import export_onnx, random_inputs  # noqa: E402
from emotion_mx.deploy.ort_runtime import (INT8_VARIANTS, OrtRunner, compare_latency,  # noqa: E402
                                           quantize_onnx, thread_settings)
from emotion_mx.deploy.pipeline import cpu_info  # noqa: E402
from emotion_mx.deploy.testing import make_run  # noqa: E402

# demo input sizes (configs/train/demo.yaml on the demo store; EmoDB log-mel for the CNN)
SIZES = {"audio_cnn": dict(audio_dim=64, audio_frames=300),
         "mid_tiny": dict(audio_dim=64, audio_frames=300, max_tokens=16, num_frames=8, frame_size=48)}


def _fmt(xs):
    return f"{statistics.median(xs):.2f} ({min(xs):.2f}..{max(xs):.2f})"


def ort_profile(path, batch, threads, spin, calls=20):
    """{op type: ms per call} from ORT's own profiler over ``calls`` runs."""
    import onnxruntime as ort
    from emotion_mx.deploy.ort_runtime import session_options
    opts = session_options(threads=threads, spin=spin)
    opts.enable_profiling = True
    opts.profile_file_prefix = os.path.join(tempfile.gettempdir(), "emx_ort_prof")
    sess = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
    feed = {i.name: batch[i.name] for i in sess.get_inputs()}
    for _ in range(3):
        sess.run(None, feed)
    sess.end_profiling()
    sess = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
    for _ in range(calls):
        sess.run(None, feed)
    prof = sess.end_profiling()
    with open(prof) as f:
        events = json.load(f)
    os.unlink(prof)
    per = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per[e["args"]["op_name"]] += e["dur"] / 1e3 / calls
    return per


def run_model(name, tmp, args):
    run = os.path.join(tmp, name, "run")
    make_run(run, name, **SIZES[name])
    fp32_dir = os.path.join(tmp, name, "fp32")
    sidecar = A.export_run(run, fp32_dir)
    export_onnx(fp32_dir)
    fp32_onnx = os.path.join(fp32_dir, A.ONNX_MODEL)
    calib = [random_inputs(sidecar, batch_size=32, seed=s) for s in range(args.calib_batches)]
    valid = random_inputs(sidecar, batch_size=64, seed=100)
    ref = OrtRunner(fp32_onnx, threads=args.threads)(valid)
    paths, agree = {"ORT fp32": fp32_onnx}, {"ORT fp32": 1.0}
    for v in args.variant:
        for ops in args.op_types:
            label = v if ops == "all" else f"{v} [{ops}]"
            path = os.path.join(tmp, name, f"{len(paths)}.onnx")
            quantize_onnx(fp32_onnx, path, calib, op_types=None if ops == "all" else ops.split(","),
                          **INT8_VARIANTS[v])
            paths[label] = path
            agree[label] = float(np.mean(OrtRunner(path, threads=args.threads)(valid).argmax(1) == ref.argmax(1)))
    rows = []
    for bs in (1, 32):
        batch = random_inputs(sidecar, batch_size=bs, seed=1)
        runners = {k: OrtRunner(p, threads=args.threads, spin=args.spin) for k, p in paths.items()}
        res = compare_latency(runners, batch, rounds=args.rounds, repeats=args.repeats)
        base = res["ORT fp32"]["rounds"]
        for k in paths:
            ratio = [b / t for b, t in zip(base, res[k]["rounds"])]
            rows.append((bs, k, _fmt(res[k]["rounds"]), _fmt(ratio)))
    print(f"\n### {name} (random weights; input sizes {SIZES[name]}; agreement on 64 random items vs ORT fp32)\n")
    print("| batch | ORT graph | ms | speed-up vs ORT fp32 | agreement | file KB |\n|---|---|---|---|---|---|")
    for bs, k, ms, ratio in rows:
        print(f"| {bs} | {k} | {ms} | {ratio}x | {agree[k]:.3f} | {os.path.getsize(paths[k]) // 1024} |")
    if args.profile:
        batch = random_inputs(sidecar, batch_size=1, seed=1)
        for k, p in paths.items():
            per = ort_profile(p, batch, args.threads, args.spin)
            total = sum(per.values())
            top = ", ".join(f"{op} {ms:.3f}" for op, ms in per.most_common(8))
            print(f"\nORT profile, {name}, {k}, batch 1 (kernel ms per call, total {total:.3f}): {top}")
    sys.stdout.flush()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", choices=sorted(SIZES))
    p.add_argument("--variant", action="append", choices=sorted(INT8_VARIANTS))
    p.add_argument("--op-types", action="append", metavar="OPS",
                   help="comma-separated ONNX op types to quantize, or 'all' (repeatable; default all)")
    p.add_argument("--threads", type=int, default=2, help="ORT intra-op threads")
    p.add_argument("--spin", action="store_true", help="let ORT's threads busy-wait (its default)")
    p.add_argument("--calib-batches", type=int, default=4)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    args.model = args.model or sorted(SIZES)
    args.variant = args.variant or list(INT8_VARIANTS)
    args.op_types = args.op_types or ["all"]
    cpu = cpu_info()
    print(f"# {cpu['model']}, {cpu['cores']} cores ({', '.join(cpu['flags'])}); ORT "
          f"{thread_settings(args.threads, args.spin)}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; "
          f"medians (min..max) over {args.rounds} interleaved rounds of {args.repeats} calls")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.model:
            run_model(name, tmp, args)


if __name__ == "__main__":
    main()
