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
    the spread (min..max of the round medians), in ms; ``rounds``: the round medians."""
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
    return {k: {"median_ms": statistics.median(v), "min_ms": min(v), "max_ms": max(v), "rounds": v}
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


# ---------------------------------------------------------------------------------------------
# ORT INT8: static QDQ quantization, calibrated on the batches the MXNet INT8 is calibrated on
# ---------------------------------------------------------------------------------------------

# Op sets tried in order (widest first); the first whose validation arg-max agreement with fp32
# reaches AGREEMENT_FLOOR is kept.  Quantizing every op broke mid_tiny's attention (43.8 %
# agreement): the Q·K^T / attention·V MatMuls take activations on both sides.
ORT_OP_SETS = (None, ("Conv", "Gemm", "MatMul"), ("Conv", "Gemm"), ("Gemm", "MatMul"), ("Gemm",))
AGREEMENT_FLOOR = 0.97


class _Reader:
    """onnxruntime.quantization CalibrationDataReader over a list of input dicts."""

    def __init__(self, batches, names):
        self._it = iter([{n: np.asarray(b[n], np.float32) for n in names} for b in batches])

    def get_next(self):
        return next(self._it, None)


def quantize_onnx(fp32_onnx, out_path, calib_batches, calib_mode="naive", op_types=None, reduce_range=False):
    """ORT static QDQ INT8 (uint8 activations, int8 weights: the x86 U8S8 path) of ``fp32_onnx``.

    ``reduce_range``: 7-bit weights, ORT's remedy for the int16 saturation of U8S8 products on
    x86 CPUs without VNNI (AVX2)."""
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    names = [i.name for i in OrtRunner(fp32_onnx).session.get_inputs()]
    method = {"naive": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy}[calib_mode]
    kw = {} if op_types is None else {"op_types_to_quantize": list(op_types)}
    quantize_static(fp32_onnx, out_path, _Reader(calib_batches, names), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=method, per_channel=False, reduce_range=reduce_range, **kw)
    return out_path


def _batched(run, inputs, batch_size=32):
    n = len(next(iter(inputs.values())))
    return np.concatenate([run({k: v[s:s + batch_size] for k, v in inputs.items()})
                           for s in range(0, n, batch_size)])


def quantize_onnx_run(net, spec, out_dir, calib_batches, valid_inputs, valid_labels, fp32_logits,
                      calib_mode="naive"):
    """Write ``out_dir/model.onnx`` (ORT INT8) for an exportable network; the op set is chosen by
    validation agreement with fp32 (:data:`ORT_OP_SETS`).  Returns a report entry like the MXNet
    INT8's (UA, accuracy, agreement, the candidates tried), or ``{"skipped": reason}``."""
    import shutil
    import tempfile
    from ..training.metrics import unweighted_accuracy
    from .onnx_export import export_onnx
    y = np.asarray(valid_labels)
    with tempfile.TemporaryDirectory() as tmp:
        fp32_dir = os.path.join(tmp, "fp32")
        A.export_block(net, spec, fp32_dir, batch_size=1)
        try:
            export_onnx(fp32_dir)
        except EmotionMXError as e:   # no ONNX for this graph: the MXNet INT8 model still stands
            log.warning("no ONNX Runtime INT8 model: %s", e)
            return {"skipped": str(e)}
        fp32_onnx = os.path.join(fp32_dir, A.ONNX_MODEL)
        ort32 = _batched(OrtRunner(fp32_onnx), valid_inputs)
        tried, chosen = [], None
        for ops in ORT_OP_SETS:      # (read at call time: tests shorten the list)
            path = os.path.join(tmp, f"int8_{len(tried)}.onnx")
            quantize_onnx(fp32_onnx, path, calib_batches, calib_mode=calib_mode, op_types=ops)
            logits = _batched(OrtRunner(path), valid_inputs)
            agree = float(np.mean(logits.argmax(1) == fp32_logits.argmax(1)))
            tried.append({"op_types": "all" if ops is None else list(ops), "argmax_agreement": agree})
            if agree >= AGREEMENT_FLOOR:
                chosen = (ops, path, logits, agree)
                break
        if chosen is None:     # none reached the floor: keep the most faithful
            best = max(range(len(tried)), key=lambda i: tried[i]["argmax_agreement"])
            ops = ORT_OP_SETS[best]
            path = os.path.join(tmp, f"int8_{best}.onnx")
            chosen = (ops, path, _batched(OrtRunner(path), valid_inputs), tried[best]["argmax_agreement"])
        ops, path, logits, agree = chosen
        shutil.copyfile(path, os.path.join(out_dir, A.ONNX_MODEL))
        p8 = logits.argmax(1)
        k = int(spec["num_classes"])
        fp32_ua = unweighted_accuracy(y, fp32_logits.argmax(1), k)
        return {"op_types": "all" if ops is None else list(ops), "candidates": tried,
                "fp32_ort_max_abs_logit_diff_vs_mxnet": float(np.abs(ort32 - fp32_logits).max()),
                "int8": {"ua": unweighted_accuracy(y, p8, k), "accuracy": float(np.mean(p8 == y))},
                "argmax_agreement": agree, "ua_loss_points": 100.0 * (fp32_ua - unweighted_accuracy(y, p8, k)),
                "max_abs_logit_diff": float(np.abs(logits - fp32_logits).max()),
                "params_bytes": os.path.getsize(os.path.join(out_dir, A.ONNX_MODEL))}
