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


def default_threads(workers=1):
    """Intra-op threads per worker: the cores this process may use divided among ``workers``
    (at least 1).  ``EMOTION_MX_THREADS`` overrides it (a positive integer)."""
    env = os.environ.get("EMOTION_MX_THREADS")
    if env:
        if not env.isdigit() or int(env) < 1:
            raise EmotionMXError(f"EMOTION_MX_THREADS={env!r}: expected a positive integer")
        return int(env)
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, int(workers)))


def session_options(threads=None, spin=False):
    """ORT ``SessionOptions``: every graph optimisation on, ``threads`` intra-op threads (None:
    :func:`default_threads`), one inter-op thread, and — unless ``spin`` — no busy-waiting
    (``session.intra_op.allow_spinning = 0``): a spinning pool steals the core from the other
    workers and jobs beside it, which is what made ORT fall behind on a shared machine."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = int(threads or default_threads())
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "1" if spin else "0")
    return opts


def thread_settings(threads=None, spin=False):
    """The line printed beside every timing: the settings :func:`session_options` applies."""
    return f"intra-op threads {int(threads or default_threads())}, inter-op 1, spinning {'on' if spin else 'off'}"


class OrtRunner:
    """An ORT session over ``DIR/model.onnx`` (all graph optimisations on, explicit threads: see
    :func:`session_options`); any batch size."""

    def __init__(self, onnx_path, threads=None, spin=False):
        from .onnx_export import ort_session
        if not os.path.isfile(onnx_path):
            raise EmotionMXError(f"{os.path.dirname(onnx_path) or '.'}: no {os.path.basename(onnx_path)}; "
                                 "export with tools/export.py --onnx (or quantize again) to run on onnxruntime")
        self.threads = int(threads or default_threads())
        self.session, self.warnings = ort_session(onnx_path, threads=self.threads, spin=spin)
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
                     write=True, onnx_note=None, threads=None):
    """Time MXNet vs ORT on this folder's model and write ``runtime.json``.

    The choice is the runtime with the lower geometric-mean latency over ``batch_sizes``, with
    ORT at the thread settings it serves with (``threads`` intra-op, no spinning).
    ``onnx_note``: why ``model.onnx`` holds what it holds (e.g. the fp32 graph in an INT8
    folder because ORT INT8 was measured slower), recorded and shown by :func:`resolve_runtime`.
    """
    from .onnx_export import random_inputs
    from .pipeline import cpu_info
    sidecar = A.read_sidecar(model_dir)
    ort = OrtRunner(os.path.join(model_dir, A.ONNX_MODEL), threads=threads)
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
              "latency_ms": latency, "cpu": cpu_info(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
              "ort_threads": thread_settings(threads)}
    if onnx_note:
        record["onnx_note"] = onnx_note
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
    note = f"; {record['onnx_note']}" if choice == "onnxruntime" and record.get("onnx_note") else ""
    return choice, (f"runtime: {choice} ({record['speedup']:.1f}x faster than {other} on this CPU, "
                    f"measured at {record.get('measured_at', 'export')}{note})")


# ---------------------------------------------------------------------------------------------
# ORT INT8: static QDQ quantization, calibrated on the batches the MXNet INT8 is calibrated on
# ---------------------------------------------------------------------------------------------

# Op sets tried (widest first); of those whose validation arg-max agreement with fp32 reaches
# AGREEMENT_FLOOR the fastest is kept, and only if faster than ORT fp32 (choose_ort_graph).
# Quantizing every op broke mid_tiny's attention (43.8 % agreement): the Q·K^T / attention·V
# MatMuls take activations on both sides; its depthwise face convolutions ran slower in INT8.
ORT_OP_SETS = (None, ("Conv", "Gemm", "MatMul"), ("Conv", "Gemm"), ("Gemm", "MatMul"), ("Conv",), ("Gemm",))
AGREEMENT_FLOOR = 0.97


class _Reader:
    """onnxruntime.quantization CalibrationDataReader over a list of input dicts."""

    def __init__(self, batches, names):
        self._it = iter([{n: np.asarray(b[n], np.float32) for n in names} for b in batches])

    def get_next(self):
        return next(self._it, None)


# How the ORT INT8 graph is built (see quantize_onnx); benchmarks/ort_int8.py times each.
INT8_VARIANTS = {
    # what the toolkit wrote before issue 25: QDQ on the raw mx2onnx graph, per-tensor weights
    "qdq_u8s8": dict(fmt="qdq", activations="u8", per_channel=False, preprocess=False),
    "qdq_u8s8_pre": dict(fmt="qdq", activations="u8", per_channel=False, preprocess=True),
    "qdq_u8s8_pc_pre": dict(fmt="qdq", activations="u8", per_channel=True, preprocess=True),
    "qdq_s8s8_pc_pre": dict(fmt="qdq", activations="s8", per_channel=True, preprocess=True),
    "qop_u8s8_pc_pre": dict(fmt="qoperator", activations="u8", per_channel=True, preprocess=True),
    "qop_u8s8_pre": dict(fmt="qoperator", activations="u8", per_channel=False, preprocess=True),
}


def preprocess_onnx(src, dst):
    """ORT's own quantization pre-processing (``quant_pre_process``): symbolic shape inference
    and ORT's basic graph optimisations written back to the file — Conv+BatchNorm folded, constant
    sub-graphs folded — so QDQ pairs are placed around the ops that will really run, not around a
    BatchNorm or a shape computation that ORT would have removed."""
    from onnxruntime.quantization.shape_inference import quant_pre_process
    with captured_logs():
        quant_pre_process(src, dst, skip_symbolic_shape=False, auto_merge=True)
    _drop_value_info(dst)
    return dst


def captured_logs():
    """ORT's quantization tools log INFO/WARNING lines through ``logging`` and print to stdout;
    both are kept out of the command's output (they are logged at DEBUG)."""
    import contextlib
    import io

    @contextlib.contextmanager
    def box():
        out = io.StringIO()
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)
        try:
            with contextlib.redirect_stdout(out):
                yield
        finally:
            root.setLevel(level)
            for line in out.getvalue().splitlines():
                log.debug("onnxruntime.quantization: %s", line)
    return box()


def quantize_onnx(fp32_onnx, out_path, calib_batches, calib_mode="naive", op_types=None, reduce_range=False,
                  fmt="qdq", activations="u8", per_channel=True, preprocess=True):
    """ORT static INT8 of ``fp32_onnx``.

    ``fmt``: ``qdq`` (QuantizeLinear/DequantizeLinear pairs, fused by ORT into QLinear kernels)
    or ``qoperator`` (QLinearConv/QLinearMatMul written directly); ``activations``: ``u8`` (uint8
    activations x int8 weights, ORT's x86 U8S8 path) or ``s8`` (int8 both, symmetric);
    ``per_channel`` weights; ``preprocess``: :func:`preprocess_onnx` first; ``reduce_range``:
    7-bit weights, ORT's remedy for the int16 saturation of U8S8 products on x86 CPUs without
    VNNI (AVX2) — see :func:`needs_reduce_range`."""
    import tempfile
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    names = [i.name for i in OrtRunner(fp32_onnx).session.get_inputs()]
    method = {"naive": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy}[calib_mode]
    kw = {} if op_types is None else {"op_types_to_quantize": list(op_types)}
    act = {"u8": QuantType.QUInt8, "s8": QuantType.QInt8}[activations]
    extra = {"ActivationSymmetric": activations == "s8", "WeightSymmetric": True}
    with tempfile.TemporaryDirectory() as tmp:
        src = preprocess_onnx(fp32_onnx, os.path.join(tmp, "pre.onnx")) if preprocess else fp32_onnx
        with captured_logs():
            quantize_static(src, out_path, _Reader(calib_batches, names),
                            quant_format={"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}[fmt],
                            activation_type=act, weight_type=QuantType.QInt8, calibrate_method=method,
                            per_channel=per_channel, reduce_range=reduce_range, extra_options=extra, **kw)
    _drop_value_info(out_path)
    return out_path


def _drop_value_info(path):
    """Remove the intermediate shapes the pre-processing wrote: its symbolic shape inference
    names some batch-sized tensors with fixed sizes, and ORT then warns about buffers of
    another size at every batch-size change (ORT infers the shapes again itself)."""
    import onnx
    model = onnx.load(path)
    del model.graph.value_info[:]
    onnx.save(model, path)


def needs_reduce_range(flags=None):
    """7-bit weights only where U8S8 products can saturate: x86 without any VNNI."""
    if flags is None:
        from .pipeline import cpu_info
        flags = cpu_info()["flags"]
    return "avx2" in flags and not ({"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags))


def _batched(run, inputs, batch_size=32):
    n = len(next(iter(inputs.values())))
    return np.concatenate([run({k: v[s:s + batch_size] for k, v in inputs.items()})
                           for s in range(0, n, batch_size)])


def choose_ort_graph(candidates, floor=AGREEMENT_FLOOR):
    """Which ORT graph to ship, from measured candidates (pure: tested with made-up timings).

    ``candidates``: dicts with ``argmax_agreement`` and ``speedup_vs_ort_fp32`` (geometric mean
    over the timed batch sizes; absent if not timed).  Of the INT8 op sets reaching ``floor``,
    the fastest; it is kept only if it is faster than ORT fp32 (speed-up > 1).  Returns
    ``(index or None, reason)``: None means ship the fp32 graph."""
    ok = [i for i, c in enumerate(candidates)
          if c.get("argmax_agreement", 0.0) >= floor and c.get("speedup_vs_ort_fp32") is not None]
    if not ok:
        return None, (f"no INT8 op set reached the agreement floor {floor:.2f}: ONNX Runtime runs the fp32 graph")
    best = max(ok, key=lambda i: candidates[i]["speedup_vs_ort_fp32"])
    sp = candidates[best]["speedup_vs_ort_fp32"]
    ops = candidates[best]["op_types"]
    if sp <= 1.0:
        return None, (f"the fastest INT8 op set ({ops}) ran at {sp:.2f}x ORT fp32 on this CPU: "
                      "ONNX Runtime runs the fp32 graph")
    return best, f"INT8 op set {ops}: {sp:.2f}x ORT fp32 on this CPU (fastest of {len(ok)} reaching the floor)"


def quantize_onnx_run(net, spec, out_dir, calib_batches, valid_inputs, valid_labels, fp32_logits,
                      calib_mode="naive", batch_size=32, rounds=3, repeats=5, threads=None, timer=None,
                      progress=None):
    """Write ``out_dir/model.onnx`` for an exportable network: the ORT INT8 graph if one is
    measured faster than ORT fp32 on this CPU, else the fp32 graph (and the report says why).

    Every op set of :data:`ORT_OP_SETS` is quantized (ORT pre-processing, per-channel U8S8 QDQ,
    7-bit weights only without VNNI) and checked against fp32 on the validation split; those
    reaching :data:`AGREEMENT_FLOOR` are timed beside ORT fp32 at batch 1 and ``batch_size``
    (interleaved rounds, the thread settings the runtime uses: ``threads``, no spinning) and
    :func:`choose_ort_graph` decides.  ``timer``: :func:`compare_latency` (tests stub it).
    Returns a report entry (UA, accuracy, agreement, every candidate, ``precision``, ``reason``),
    or ``{"skipped": reason}``."""
    import shutil
    import tempfile
    from ..training.metrics import unweighted_accuracy
    from .onnx_export import export_onnx
    timer = timer or compare_latency
    y = np.asarray(valid_labels)
    reduce_range = needs_reduce_range()
    with tempfile.TemporaryDirectory() as tmp:
        fp32_dir = os.path.join(tmp, "fp32")
        A.export_block(net, spec, fp32_dir, batch_size=1)
        try:
            export_onnx(fp32_dir)
        except EmotionMXError as e:   # no ONNX for this graph: the MXNet INT8 model still stands
            log.warning("no ONNX Runtime INT8 model: %s", e)
            return {"skipped": str(e)}
        fp32_onnx = os.path.join(fp32_dir, A.ONNX_MODEL)
        ort32 = _batched(OrtRunner(fp32_onnx, threads=threads), valid_inputs)
        tried, paths, outputs = [], [], []
        for ops in ORT_OP_SETS:      # (read at call time: tests shorten the list)
            path = os.path.join(tmp, f"int8_{len(tried)}.onnx")
            quantize_onnx(fp32_onnx, path, calib_batches, calib_mode=calib_mode, op_types=ops,
                          reduce_range=reduce_range)
            logits = _batched(OrtRunner(path, threads=threads), valid_inputs)
            agree = float(np.mean(logits.argmax(1) == fp32_logits.argmax(1)))
            tried.append({"op_types": "all" if ops is None else list(ops), "argmax_agreement": agree})
            if progress:
                progress(f"ORT INT8 op set {tried[-1]['op_types']}: agreement {agree:.3f}")
            paths.append(path)
            outputs.append(logits)
        timed = [i for i, c in enumerate(tried) if c["argmax_agreement"] >= AGREEMENT_FLOOR]
        if timed:
            logs = {i: [] for i in timed}
            for bs in sorted({1, int(batch_size)}):
                rows = np.arange(bs) % len(y)
                batch = {k: np.asarray(v)[rows] for k, v in valid_inputs.items()}
                runners = {"fp32": OrtRunner(fp32_onnx, threads=threads)}
                runners.update({i: OrtRunner(paths[i], threads=threads) for i in timed})
                res = timer(runners, batch, rounds=rounds, repeats=repeats)
                for i in timed:
                    tried[i].setdefault("ms", {})[f"batch{bs}"] = res[i]["median_ms"]
                    tried[i].setdefault("ort_fp32_ms", {})[f"batch{bs}"] = res["fp32"]["median_ms"]
                    logs[i].append(math.log(res["fp32"]["median_ms"] / res[i]["median_ms"]))
            for i in timed:
                tried[i]["speedup_vs_ort_fp32"] = math.exp(sum(logs[i]) / len(logs[i]))
        keep, reason = choose_ort_graph(tried)
        if progress:
            progress("ORT: " + reason)
        k = int(spec["num_classes"])
        fp32_ua = unweighted_accuracy(y, fp32_logits.argmax(1), k)
        common = {"candidates": tried, "reason": reason, "reduce_range": reduce_range,
                  "threads": thread_settings(threads), "cpu_flags": _cpu_flags(),
                  "fp32_ort_max_abs_logit_diff_vs_mxnet": float(np.abs(ort32 - fp32_logits).max())}
        if keep is None:
            shutil.copyfile(fp32_onnx, os.path.join(out_dir, A.ONNX_MODEL))
            p = ort32.argmax(1)
            return dict(common, precision="fp32", op_types=[],
                        int8={"ua": unweighted_accuracy(y, p, k), "accuracy": float(np.mean(p == y))},
                        argmax_agreement=float(np.mean(p == fp32_logits.argmax(1))),
                        ua_loss_points=100.0 * (fp32_ua - unweighted_accuracy(y, p, k)),
                        max_abs_logit_diff=float(np.abs(ort32 - fp32_logits).max()),
                        params_bytes=os.path.getsize(os.path.join(out_dir, A.ONNX_MODEL)))
        shutil.copyfile(paths[keep], os.path.join(out_dir, A.ONNX_MODEL))
        logits = outputs[keep]
        p8 = logits.argmax(1)
        return dict(common, precision="int8", op_types=tried[keep]["op_types"],
                    int8={"ua": unweighted_accuracy(y, p8, k), "accuracy": float(np.mean(p8 == y))},
                    argmax_agreement=tried[keep]["argmax_agreement"],
                    ua_loss_points=100.0 * (fp32_ua - unweighted_accuracy(y, p8, k)),
                    max_abs_logit_diff=float(np.abs(logits - fp32_logits).max()),
                    params_bytes=os.path.getsize(os.path.join(out_dir, A.ONNX_MODEL)))


def _cpu_flags():
    from .pipeline import cpu_info
    return cpu_info()["flags"]
