"""MXNet fp32-fused / MXNet INT8 / ORT fp32 / ORT INT8 on trained runs, same process.

    nice -n 10 .venv/bin/python benchmarks/runtimes.py \\
        --case "EmoDB CNN" work/emodb_run work/emodb --case "mid_tiny" RUN STORE [--rounds 5]
    nice -n 10 .venv/bin/python benchmarks/runtimes.py --preset all [--preset whisper_tiny_en ...]

``--preset NAME`` (or ``all``): a random-weight run of the preset at its own input sizes
(``model_input_sizes``: Whisper 80 mel bins), no store: latency only (MXNet INT8 from
``quantize_symbol`` and ORT INT8 from ``quantize_onnx`` calibrated on random inputs; a runtime a
preset cannot use — RNN graphs have no ONNX — is printed as n/a with the reason).

Per case: ``quantize_run`` (MXNet INT8, its fp32 layers chosen by measurement, + ORT QDQ INT8
from the same calibration batches of the training split, accuracy on the validation split) and ``export --onnx`` of the fp32 run into a
temporary folder; then the four runtimes timed at batch 1 and 32 in interleaved rounds
(:func:`emotion_mx.deploy.ort_runtime.compare_latency`).  Printed: median ms (min..max over
rounds), speed-up vs MXNet fp32-fused (median and min..max of the per-round ratios), validation
UA and arg-max agreement with fp32.
"""
import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from emotion_mx import artifacts as A  # noqa: E402
from emotion_mx.deploy.export import export  # noqa: E402
from emotion_mx.deploy.onnx_export import random_inputs  # noqa: E402
from emotion_mx.deploy.ort_runtime import OrtRunner, compare_latency  # noqa: E402
from emotion_mx.deploy.pipeline import cpu_info, quantize_run  # noqa: E402
from emotion_mx.deploy.runtime import Runner  # noqa: E402

NAMES = ("MXNet fp32-fused", "MXNet INT8", "ORT fp32", "ORT INT8")


def _runners(fp32_dir, int8_dir, shapes):
    out = {}
    for label, d, backend in (("MXNet fp32-fused", fp32_dir, "fused"), ("MXNet INT8", int8_dir, "asis")):
        sym, args, aux = A.load_symbol_params(d)
        out[label] = Runner(sym, args, aux, shapes, backend=backend)
    out["ORT fp32"] = OrtRunner(os.path.join(fp32_dir, A.ONNX_MODEL))
    out["ORT INT8"] = OrtRunner(os.path.join(int8_dir, A.ONNX_MODEL))
    return out


def _fmt(xs):
    return f"{statistics.median(xs):.2f} ({min(xs):.2f}..{max(xs):.2f})"


def op_profile(runner, batch, calls=20, top=10):
    """Top operators by total time (MXNet profiler, aggregate stats) over ``calls`` forwards."""
    import re
    import mxnet as mx
    runner(batch)
    mx.profiler.set_config(profile_symbolic=True, profile_imperative=False, aggregate_stats=True,
                           filename=os.path.join(tempfile.gettempdir(), "emx_profile.json"))
    mx.profiler.set_state("run")
    for _ in range(calls):
        runner(batch)
    mx.nd.waitall()
    mx.profiler.set_state("stop")
    rows = []
    for line in mx.profiler.dumps(reset=True).splitlines():
        m = re.match(r"^\s*(\S+)\s+(\d+)\s+([\d.]+)\s+[\d.]+\s+[\d.]+\s+[\d.]+\s*$", line)
        if m and not m.group(1).startswith(("CopyCPU", "WaitForVar", "MX")):
            rows.append((m.group(1), int(m.group(2)) // calls, float(m.group(3)) / calls))
    total = sum(r[2] for r in rows) or 1.0
    rows.sort(key=lambda r: -r[2])
    return [(name, n, ms, 100.0 * ms / total) for name, n, ms in rows[:top]], total


def print_profile(fp32_dir, int8_dir, batch_size):
    # per operator, not per bulked segment (read when the executors below are bound); host copies
    # are left out: MXNet is asynchronous, so the copy-in waits for the previous forward
    os.environ["MXNET_EXEC_BULK_EXEC_INFERENCE"] = "0"
    sidecar = A.read_sidecar(fp32_dir)
    batch = random_inputs(sidecar, batch_size=batch_size, seed=1)
    runners = _runners(fp32_dir, int8_dir, {k: x.shape for k, x in batch.items()})
    for name in ("MXNet fp32-fused", "MXNet INT8"):
        rows, total = op_profile(runners[name], batch)
        print(f"\nPer-operator profile, {name}, batch {batch_size} (ms per forward; total {total:.2f} ms):\n")
        print("| operator | calls | ms | share |\n|---|---|---|---|")
        for op, n, ms, share in rows:
            print(f"| {op} | {n} | {ms:.3f} | {share:.0f} % |")


def run_case(label, run_dir, data_dir, rounds, repeats, tmp, profile=False):
    fp32_dir, int8_dir = os.path.join(tmp, "fp32"), os.path.join(tmp, "int8")
    export(run_dir, fp32_dir, onnx=True, measure_runtime=False)
    report = quantize_run(run_dir, data_dir, int8_dir, calib_mode="naive", calib_batches=8, batch_size=32,
                          repeats=3)
    v, o8 = report["validation"], report["onnxruntime_int8"]
    sidecar = A.read_sidecar(fp32_dir)
    rows = []
    for bs in (1, 32):
        batch = random_inputs(sidecar, batch_size=bs, seed=1)
        res = compare_latency(_runners(fp32_dir, int8_dir, {k: x.shape for k, x in batch.items()}), batch,
                              rounds=rounds, repeats=repeats)
        base = res["MXNet fp32-fused"]["rounds"]
        for name in NAMES:
            ratio = [b / t for b, t in zip(base, res[name]["rounds"])]
            rows.append((bs, name, _fmt(res[name]["rounds"]), _fmt(ratio)))
    acc = {"MXNet fp32-fused": (v["fp32"]["ua"], 1.0), "MXNet INT8": (v["int8"]["ua"], v["argmax_agreement"]),
           "ORT fp32": (v["fp32"]["ua"], 1.0), "ORT INT8": (o8["int8"]["ua"], o8["argmax_agreement"])}
    print(f"\n### {label} ({report['model']}, {v['samples']} validation items; MXNet INT8 params "
          f"{report['params']['ratio']:.2f}x fp32; ORT INT8 ops: "
          f"{o8['op_types']}; ORT fp32 max |logit diff| vs MXNet {o8['fp32_ort_max_abs_logit_diff_vs_mxnet']:.1e})\n")
    print("| batch | runtime | ms | speed-up vs MXNet fp32-fused | valid UA | agreement with fp32 |")
    print("|---|---|---|---|---|---|")
    for bs, name, ms, ratio in rows:
        ua, agree = acc[name]
        print(f"| {bs} | {name} | {ms} | {ratio}x | {ua:.3f} | {agree:.3f} |")
    cands = ", ".join(f"{c['op_types']}: {c['argmax_agreement']:.3f}" for c in o8["candidates"])
    print(f"\nORT INT8 op sets tried (validation agreement): {cands}")
    search = report["summary"].get("int8_layers")
    if search:
        print(f"\nMXNet INT8 layers kept fp32, chosen by measurement ({search['why']}): **{search['chosen']}**; "
              "tried: " + "; ".join(search["candidates"]), flush=True)
    if profile:
        print_profile(fp32_dir, int8_dir, 1)


PRESET_FEATURES = dict(audio_dim=64, audio_frames=300, max_tokens=32, num_frames=8, frame_size=48)


def run_preset(name, rounds, repeats, tmp):
    """Latency of the four runtimes on a random-weight run of preset ``name`` (no store)."""
    from emotion_mx.deploy.onnx_export import export_onnx
    from emotion_mx.deploy.ort_runtime import quantize_onnx
    from emotion_mx.deploy.quantize import quantize_symbol
    from emotion_mx.deploy.testing import make_run
    from emotion_mx.errors import EmotionMXError
    from emotion_mx.models import model_input_sizes
    fixed = model_input_sizes(name)
    run = os.path.join(tmp, "run")
    make_run(run, name, **{k: v for k, v in PRESET_FEATURES.items() if k not in fixed})
    fp32_dir = os.path.join(tmp, "fp32")
    sidecar = A.export_run(run, fp32_dir)
    names = [i["name"] for i in sidecar["inputs"]]
    sym, args, aux = A.load_symbol_params(fp32_dir)
    calib = [random_inputs(sidecar, batch_size=8, seed=s) for s in range(2)]
    notes, int8 = [], None
    try:
        int8 = quantize_symbol(sym, args, aux, names, calib)[:3]
    except EmotionMXError as e:
        notes.append(f"MXNet INT8 n/a: {e}")
    onnx_ok = True
    try:
        export_onnx(fp32_dir)
        quantize_onnx(os.path.join(fp32_dir, A.ONNX_MODEL), os.path.join(tmp, "int8.onnx"), calib)
    except EmotionMXError as e:
        onnx_ok = False
        notes.append(f"ORT n/a: {e}")
    rows = []
    for bs in (1, 32):
        batch = random_inputs(sidecar, batch_size=bs, seed=1)
        shapes = {k: x.shape for k, x in batch.items()}
        runners = {"MXNet fp32-fused": Runner(sym, args, aux, shapes, backend="fused")}
        if int8:
            runners["MXNet INT8"] = Runner(*int8, shapes, backend="asis")
        if onnx_ok:
            runners["ORT fp32"] = OrtRunner(os.path.join(fp32_dir, A.ONNX_MODEL))
            runners["ORT INT8"] = OrtRunner(os.path.join(tmp, "int8.onnx"))
        res = compare_latency(runners, batch, rounds=rounds, repeats=repeats)
        base = res["MXNet fp32-fused"]["rounds"]
        for k in runners:
            rows.append((bs, k, _fmt(res[k]["rounds"]), _fmt([b / t for b, t in zip(base, res[k]["rounds"])])))
    print(f"\n### preset {name} (random weights; inputs {sidecar_shapes(sidecar)})\n")
    print("| batch | runtime | ms | speed-up vs MXNet fp32-fused |\n|---|---|---|---|")
    for bs, k, ms, ratio in rows:
        print(f"| {bs} | {k} | {ms} | {ratio}x |")
    for n in notes:
        print(f"\n{n}")
    sys.stdout.flush()


def sidecar_shapes(sidecar):
    return ", ".join(f"{i['name']} {tuple(i['shape'][1:])}" for i in sidecar["inputs"] if not i["name"].endswith("_mask"))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--case", nargs=3, action="append", metavar=("LABEL", "RUN", "STORE"), default=[])
    p.add_argument("--preset", action="append", default=[], metavar="NAME",
                   help="a registered preset with random weights at its own input sizes, or 'all' (repeatable)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=10, help="calls per runtime per round")
    p.add_argument("--profile", action="store_true", help="also the per-operator profile of MXNet fp32 vs INT8 at batch 1")
    args = p.parse_args()
    if not args.case and not args.preset:
        p.error("give --case LABEL RUN STORE or --preset NAME")
    from emotion_mx.deploy.ort_runtime import thread_settings
    cpu = cpu_info()
    print(f"# {cpu['model']}, {cpu['cores']} cores ({', '.join(cpu['flags'])}); "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; ORT {thread_settings()}; medians (min..max) over "
          f"{args.rounds} interleaved rounds of {args.repeats} calls")
    presets = args.preset
    if "all" in presets:
        from emotion_mx.models import list_models
        presets = list_models()
    for name in presets:
        with tempfile.TemporaryDirectory() as tmp:
            run_preset(name, args.rounds, args.repeats, tmp)
    for label, run_dir, data_dir in args.case:
        with tempfile.TemporaryDirectory() as tmp:
            run_case(label, run_dir, data_dir, args.rounds, args.repeats, tmp, profile=args.profile)


if __name__ == "__main__":
    main()
