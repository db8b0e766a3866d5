"""ONNX Runtime beside MXNet: one exported folder, two runtimes, the faster one by default.

An exported folder (fp32 from ``tools/export.py --onnx``, INT8 from ``tools/quantize.py``) may
hold ``model.onnx`` next to the MXNet symbol/params: the same network at the same precision
(fp32, or ORT static QDQ INT8 calibrated on the same batches as the MXNet INT8).  The step that
writes it also times both runtimes on this CPU, in one process with interleaved rounds, and
records the result in ``DIR/runtime.json``::

    {"format": "emotion_mx.runtime/1", "choice": "onnxruntime", "speedup": 1.9,
     "measured_at": "export", "latency_ms": {"batch1": {"mxnet": .., "onnxruntime": ..}, ...},
     "cpu": {...}}

``runtime="auto"`` (the default of predict, stream and the service) reads that record;
``"mxnet"`` / ``"onnxruntime"`` force one.  :func:`resolve_runtime` returns the name and the
line the tools print ("runtime: onnxruntime (1.9x faster than mxnet on this CPU, measured at
export)").
"""
import logging
import math
import os
import statistics
import time

import numpy as np

from .. import artifacts as A
from ..errors import EmotionMXError
from ..fileio import read_json, write_json

log = logging.getLogger(__name__)

RUNTIMES = ("mxnet", "onnxruntime")
CHOICES = RUNTIMES + ("auto",)
RUNTIME_RECORD = "runtime.json"
RECORD_FORMAT = "emotion_mx.runtime/1"


class OrtRunner:
    """An ORT session over ``DIR/model.onnx`` (all graph optimisations on); any batch size."""

    def __init__(self, onnx_path, threads=None):
        from .onnx_export import ort_session
        if not os.path.isfile(onnx_path):
            raise EmotionMXError(f"{os.path.dirname(onnx_path) or '.'}: no {os.path.basename(onnx_path)}; "
                                 "export with tools/export.py --onnx (or quantize again) to run on onnxruntime")
        self.session, self.warnings = ort_session(onnx_path, threads=threads)
        self.names = [i.name for i in self.session.get_inputs()]

    def __call__(self, inputs):
        """``inputs``: dict name → float32 array (extra keys ignored) → logits (numpy)."""
        return self.session.run(None, {n: np.asarray(inputs[n], np.float32) for n in self.names})[0]


def _mxnet_runner(model_dir, shapes):
    from .runtime import Runner
    sidecar = A.read_sidecar(model_dir)
    sym, args, aux = A.load_symbol_params(model_dir)
    # fp32 runs oneDNN-fused (as SymbolBlock/C API do); INT8 graphs are fused by quantization
    backend = "fused" if sidecar.get("precision", "fp32") == "fp32" else "asis"
    return Runner(sym, args, aux, shapes, backend=backend)


def compare_latency(runners, batch, rounds=5, repeats=10, warmup=3):
    """Same-run timing of several runners on one batch: interleaved rounds (each runner
    ``repeats`` calls per round); per runner the median over rounds of the round medians and
    the spread (min..max of the round medians), in ms."""
    for run in runners.values():
        for _ in range(warmup):
            run(batch)
    per_round = {k: [] for k in runners}
    for _ in range(rounds):
        for k, run in runners.items():
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                run(batch)
                times.append((time.perf_counter() - t0) * 1e3)
            per_round[k].append(statistics.median(times))
    return {k: {"median_ms": statistics.median(v), "min_ms": min(v), "max_ms": max(v)}
            for k, v in per_round.items()}


def measure_runtimes(model_dir, batch_sizes=(1, 32), rounds=5, repeats=10, measured_at="export",
                     write=True):
    """Time MXNet vs ORT on this folder's model (same precision) and write ``runtime.json``.

    The choice is the runtime with the lower geometric-mean latency over ``batch_sizes``.
    """
    from .onnx_export import random_inputs
    from .pipeline import cpu_info
    sidecar = A.read_sidecar(model_dir)
    ort = OrtRunner(os.path.join(model_dir, A.ONNX_MODEL))
    latency, logs = {}, []
    for bs in batch_sizes:
        batch = random_inputs(sidecar, batch_size=bs, seed=1)
        mx_run = _mxnet_runner(model_dir, {k: v.shape for k, v in batch.items()})
        res = compare_latency({"mxnet": mx_run, "onnxruntime": ort}, batch, rounds=rounds, repeats=repeats)
        latency[f"batch{bs}"] = res
        logs.append(math.log(res["mxnet"]["median_ms"] / res["onnxruntime"]["median_ms"]))
    ratio = math.exp(sum(logs) / len(logs))          # > 1: ORT faster
    choice = "onnxruntime" if ratio > 1.0 else "mxnet"
    record = {"format": RECORD_FORMAT, "choice": choice, "speedup": ratio if ratio > 1.0 else 1.0 / ratio,
              "precision": sidecar.get("precision", "fp32"), "measured_at": measured_at,
              "latency_ms": latency, "cpu": cpu_info(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    if write:
        write_json(os.path.join(model_dir, RUNTIME_RECORD), record)
    return record


def read_record(model_dir):
    path = os.path.join(model_dir, RUNTIME_RECORD)
    if not os.path.isfile(path):
        return None
    record = read_json(path)
    if record.get("format") != RECORD_FORMAT or record.get("choice") not in RUNTIMES:
        raise EmotionMXError(f"{path}: not a runtime record (format {record.get('format')!r}); "
                             "delete it or export again")
    return record


def resolve_runtime(model_dir, runtime="auto"):
    """``(runtime name, message)`` for ``runtime`` in mxnet|onnxruntime|auto."""
    if runtime not in CHOICES:
        raise EmotionMXError(f"unknown runtime '{runtime}'; choose from {', '.join(CHOICES)}")
    has_onnx = os.path.isfile(os.path.join(model_dir, A.ONNX_MODEL))
    if runtime == "onnxruntime":
        if not has_onnx:
            raise EmotionMXError(f"{model_dir}: no {A.ONNX_MODEL} for --runtime onnxruntime; export with "
                                 "tools/export.py --onnx (recurrent models cannot be exported to ONNX)")
        return runtime, "runtime: onnxruntime (asked)"
    if runtime == "mxnet":
        return runtime, "runtime: mxnet (asked)"
    record = read_record(model_dir) if has_onnx else None
    if record is None:
        why = "no model.onnx" if not has_onnx else f"no {RUNTIME_RECORD}"
        return "mxnet", f"runtime: mxnet ({why} in the model folder)"
    choice = record["choice"]
    other = "mxnet" if choice == "onnxruntime" else "onnxruntime"
    return choice, (f"runtime: {choice} ({record['speedup']:.1f}x faster than {other} on this CPU, "
                    f"measured at {record.get('measured_at', 'export')})")
