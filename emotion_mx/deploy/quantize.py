"""Post-training INT8 quantization of exported symbols (oneDNN backend, CPU).

Pipeline (measured on MXNet 1.9.1; see docs/deployment.md):

1. ``sym.get_backend_symbol('MKLDNN_QUANTIZE')`` fuses the fp32 graph (FC+act, Conv+BN+act);
2. ``mx.contrib.quantization.quantize_graph`` inserts quantize/requantize/dequantize nodes and
   returns a calibration collector;
3. the fused fp32 graph runs on TRAINING-split batches with the collector as monitor callback
   (an executor bound by input *name*, so a 5-D ``video`` input needs no special order);
4. ``calib_graph`` writes the thresholds and quantizes weights; a second
   ``get_backend_symbol('MKLDNN_QUANTIZE')`` folds requantize/dequantize into the oneDNN ops.

This is what ``quantize_model_mkldnn`` does, split open so that graph patterns known to crash
or fail in MXNet 1.9.1 can be excluded *before* they reach the backend pass:

* a quantized FC/Conv whose output feeds both a quantized op and an fp32 op (e.g. a projection
  used as attention value by ``batch_dot`` and as input of the next Dense) segfaults inside the
  post-calibration fusion pass → that FC/Conv stays fp32;
* an op whose non-weight parameter (a ``Constant`` such as a positional-encoding table) would
  be quantized offline fails with "Parameter ..._quantize is missing" → that op stays fp32;
* ``RNN`` ops stay fp32 (a quantized RNN fails in a Gluon SymbolBlock: no FGradient).
"""
import fnmatch
import json
import logging
import re

import numpy as np

from ..errors import EmotionMXError
from .runtime import Runner

log = logging.getLogger(__name__)

CALIB_MODES = ("naive", "entropy")
DEFAULT_EXCLUDED_OPS = ("RNN",)
QUANTIZED_OP_PREFIXES = ("_contrib_quantized_",)
FUSED_QUANTIZABLE = ("_sg_mkldnn_fully_connected", "_sg_mkldnn_conv", "_sg_mkldnn_selfatt_qk",
                     "_sg_mkldnn_selfatt_valatt")


def graph_nodes(sym):
    return json.loads(sym.tojson())["nodes"]


def _members(node):
    """Names a (possibly fused) node stands for: its own and those of ops fused into it."""
    names = [node["name"]]
    for sub in node.get("subgraphs", []) or []:
        names += [n["name"] for n in sub["nodes"] if n["op"] != "null"]
    return names


def _matches(name, pattern):
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(name, pattern)
    return name == pattern or name.startswith(pattern)


def resolve_exclusions(fused_sym, patterns):
    """Node names in the fused fp32 graph to keep fp32, for user patterns.

    A pattern is a block prefix (``mid_tiny_fusion_``), an exact op name, or a glob; it matches
    a fused node if it matches the node or any op fused into it (an exact op name matches that
    op alone, not the ops it is a prefix of).  Unmatched patterns are an
    error (a typo would otherwise silently quantize the layer).
    """
    nodes = [n for n in graph_nodes(fused_sym) if n["op"] != "null"]
    out, unmatched = {}, []
    for pat in patterns:
        # an exact op name names that op only, even where it is a prefix of others ("..._conv"
        # of "..._conv1"): the per-layer fallback excludes layers by their exact names
        hit = [n["name"] for n in nodes if pat in _members(n)]
        hit = hit or [n["name"] for n in nodes if any(_matches(m, pat) for m in _members(n))]
        if not hit:
            unmatched.append(pat)
        for h in hit:
            out.setdefault(h, f"--exclude {pat}")
    if unmatched:
        raise EmotionMXError(f"--exclude {unmatched[0]} matches no layer of the model; "
                             "pass a block prefix, an op name or a glob (see the graph in model-symbol.json)")
    return out


def _consumers(nodes):
    cons = {}
    for i, n in enumerate(nodes):
        for src in n.get("inputs", []):
            cons.setdefault(src[0], []).append(i)
    return cons


def unsafe_nodes(qsym, arg_params):
    """{fp32 node name: reason} for patterns of an (uncalibrated) quantized graph known to fail."""
    nodes = graph_nodes(qsym)
    cons = _consumers(nodes)
    out = {}
    for i, n in enumerate(nodes):
        if n["op"] == "_contrib_requantize" and n["name"].startswith("requantize_"):
            ops = {nodes[c]["op"] for c in cons.get(i, [])}
            if "_contrib_dequantize" in ops and len(ops) > 1:
                out[n["name"][len("requantize_"):]] = ("output feeds both quantized and fp32 ops "
                                                       "(MKLDNN_QUANTIZE fusion segfaults)")
        if n["op"] == "null" and n["name"].endswith("_quantize"):
            base = n["name"][:-len("_quantize")]
            if base in arg_params and not base.endswith(("weight", "bias")):
                for c in cons.get(i, []):
                    name = nodes[c]["name"]
                    out[name[len("quantized_"):] if name.startswith("quantized_") else name] = (
                        f"consumes non-weight parameter {base} (cannot be quantized offline)")
    return out


def _first_error_line(e):
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    msg = next((l for l in lines if "Check failed" in l or l.startswith("MXNetError")), lines[-1] if lines else "")
    return msg.replace("MXNetError: ", "")[:240]


_OP_ERROR = re.compile(r"Error in operator (\S+?):")


def _runtime_failures(qsym, qargs, qaux, probe, excluded):
    """{fp32 node: reason} for quantized ops that MXNet rejects at bind/forward time.

    Binds the backend-fused INT8 graph (calibrated on the probe batch: see :func:`_probe_graph`)
    and runs one batch; an operator error such as "QuantizedPoolingOp only supports 4D/5D" names
    the op to keep in fp32.
    """
    import mxnet as mx
    try:
        Runner(qsym, qargs, qaux, {k: v.shape for k, v in probe.items()})(probe)
        return {}
    except mx.base.MXNetError as e:
        text = str(e)
        m = _OP_ERROR.search(text)
        name = m.group(1) if m else None
        if name and name.startswith("quantized_"):
            name = name[len("quantized_"):]
        if not name or name in excluded:
            raise EmotionMXError(f"the INT8 graph does not run: {text.strip().splitlines()[0][:300]}") from None
        reason = next((l.strip() for l in text.splitlines() if "Check failed" in l), text.splitlines()[0])
        return {name: "rejected at run time: " + reason.split("Check failed:", 1)[-1].strip()[:160]}


def _probe_graph(fused, arg_params, aux_params, qsym, collector, cache, quantized_dtype):
    """The backend-fused INT8 graph calibrated with the cached thresholds.

    Calibrated, not raw: an uncalibrated quantize node emits int8 where the calibrated one emits
    uint8 (non-negative ranges, e.g. softmax probabilities with ``quantized_dtype='auto'``), and
    oneDNN's quantized self-attention value op accepts only the latter."""
    from mxnet.contrib.quantization import calib_graph
    th = _Thresholds(cache.thresholds(collector.include_layer))
    qsym, qargs, qaux = calib_graph(qsym, arg_params, aux_params, th, calib_mode="customize",
                                    quantized_dtype=quantized_dtype, logger=None)
    qsym = qsym.get_backend_symbol("MKLDNN_QUANTIZE")
    return qsym, {k: v for k, v in qargs.items() if k in set(qsym.list_arguments())}, qaux


class _Thresholds:
    """A filled 'customize' collector: {layer output: (min, max)}."""

    def __init__(self, min_max_dict):
        self.min_max_dict = min_max_dict


class CalibrationCache:
    """Calibrate once, reuse for every candidate: thresholds ``{layer output: (min, max)}`` of
    the fused fp32 graph on the calibration batches, collected the first time a layer output is
    asked for (one calibration pass per batch of new names, usually one in all).

    Every candidate exclusion set quantizes the same fused fp32 graph, so the same layer output
    has the same range whichever set asks: naive = min/max over the batches; entropy = the
    KL-optimal thresholds computed the ``auto`` way ((0, th) for non-negative outputs, see
    :func:`quantize_symbol`).  The executors of a pass are dropped when it ends."""

    def __init__(self, fused, arg_params, aux_params, names, batches, calib_mode="naive"):
        if calib_mode not in CALIB_MODES:
            raise EmotionMXError(f"unknown calibration mode '{calib_mode}'; choose from {', '.join(CALIB_MODES)}")
        self.fused, self.args, self.aux, self.names = fused, arg_params, aux_params, names
        self.batches, self.calib_mode = list(batches), calib_mode
        self.th, self.passes, self.examples = {}, 0, 0

    def thresholds(self, layers):
        from mxnet.contrib.quantization import (_get_optimal_thresholds, _LayerHistogramCollector,
                                                _LayerOutputMinMaxCollector)
        layers = set(layers)
        missing = layers - set(self.th)
        if missing:
            if self.calib_mode == "naive":
                collector = _LayerOutputMinMaxCollector("int8", include_layer=missing)
            else:
                collector = _LayerHistogramCollector(include_layer=missing)
            self.examples = _Calibrator(self.fused, self.args, self.aux, self.names).run(self.batches, collector)
            self.passes += 1
            if self.calib_mode == "naive":
                self.th.update(collector.min_max_dict)
            else:
                self.th.update(_get_optimal_thresholds(collector.hist_dict, "auto"))
        return {k: v for k, v in self.th.items() if k in layers}


class _Calibrator:
    """Runs the fused fp32 graph on named input batches, feeding a quantization collector."""

    def __init__(self, sym, arg_params, aux_params, names):
        self.sym, self.args, self.aux, self.names = sym, arg_params, aux_params, names
        self._exes = {}

    def _exe(self, shapes):
        import mxnet as mx
        key = tuple(shapes)
        if key not in self._exes:
            args = {k: v for k, v in self.args.items() if k in set(self.sym.list_arguments())}
            args.update({n: mx.nd.zeros(s) for n, s in zip(self.names, shapes)})
            aux = {k: self.aux[k] for k in self.sym.list_auxiliary_states()}
            self._exes[key] = self.sym.bind(mx.cpu(), args, aux_states=aux, grad_req="null")
        return self._exes[key]

    def run(self, batches, collector):
        count = 0
        for batch in batches:
            arrays = [np.asarray(batch[n], dtype=np.float32) for n in self.names]
            exe = self._exe([a.shape for a in arrays])
            exe.set_monitor_callback(collector.collect, monitor_all=True)
            for n, a in zip(self.names, arrays):
                exe.arg_dict[n][:] = a
            exe.forward(is_train=False)
            for o in exe.outputs:
                o.wait_to_read()
            count += len(arrays[0])
        return count


def default_dtype(sym):
    """``"auto"`` (uint8 where the calibrated range is non-negative) for graphs with interleaved
    self-attention ops, whose oneDNN INT8 value op takes the softmax probabilities as uint8
    only; ``"int8"`` otherwise."""
    selfatt = any(n["op"].startswith("_contrib_interleaved_matmul_selfatt") for n in graph_nodes(sym))
    return "auto" if selfatt else "int8"


def quantize_symbol(sym, arg_params, aux_params, names, calib_batches, calib_mode="naive",
                    exclude=(), excluded_ops=DEFAULT_EXCLUDED_OPS, quantized_dtype=None,
                    max_rounds=20, cache=None):
    """INT8 symbol and params for an fp32 graph with named inputs.

    ``calib_batches``: a sequence of dicts name → float32 array (training split);
    ``quantized_dtype`` None: :func:`default_dtype` of the graph; ``cache``: a
    :class:`CalibrationCache` over the same graph and batches shared by several calls (the
    search), else one is made for this call.
    Returns ``(qsym, qarg_params, qaux_params, info)``; ``info`` has ``excluded``
    ({fused node: reason}), ``calib_examples`` and the operator census of the result.
    """
    import mxnet as mx
    from mxnet.contrib.quantization import calib_graph, quantize_graph
    if calib_mode not in CALIB_MODES:
        raise EmotionMXError(f"unknown calibration mode '{calib_mode}'; choose from {', '.join(CALIB_MODES)}")
    quantized_dtype = quantized_dtype or default_dtype(sym)
    calib_batches = list(calib_batches)
    if not calib_batches:
        raise EmotionMXError("no calibration batches (the training split is empty?)")
    fused = sym.get_backend_symbol("MKLDNN_QUANTIZE")
    if cache is None:
        cache = CalibrationCache(fused, arg_params, aux_params, names, calib_batches, calib_mode)
    elif cache.calib_mode != calib_mode:
        raise ValueError("the calibration cache was made for another calibration mode")
    fused = cache.fused
    excluded = resolve_exclusions(fused, list(exclude))
    probe = {n: np.asarray(calib_batches[0][n], dtype=np.float32) for n in names}
    for _ in range(max_rounds):
        qsym, qargs, qaux, collector = quantize_graph(
            fused, arg_params, aux_params, ctx=mx.cpu(), excluded_sym_names=sorted(excluded),
            excluded_op_names=list(excluded_ops), calib_mode=calib_mode,
            quantized_dtype=quantized_dtype, quantize_mode="full", logger=None)
        bad = {k: v for k, v in unsafe_nodes(qsym, arg_params).items() if k not in excluded}
        if not bad:
            bad = _runtime_failures(*_probe_graph(fused, arg_params, aux_params, qsym, collector, cache,
                                                  quantized_dtype), probe, excluded)
        if not bad:
            break
        for k, v in bad.items():
            log.info("keeping %s in fp32: %s", k, v)
        excluded.update(bad)
    else:
        raise EmotionMXError("quantization kept finding unsupported patterns; exclude more layers with --exclude")
    # MXNet computes symmetric (-th, th) entropy thresholds for int8 even for non-negative (ReLU)
    # outputs, which oneDNN then emits as uint8: the next quantized conv fails with "Expect int8
    # when data_min < 0.0".  The cache computes them the 'auto' way: (0, th) there, as naive does.
    th = _Thresholds(cache.thresholds(collector.include_layer))
    n = cache.examples
    qsym, qargs, qaux = calib_graph(qsym, arg_params, aux_params, th, calib_mode="customize",
                                    quantized_dtype=quantized_dtype, logger=None)
    qsym = qsym.get_backend_symbol("MKLDNN_QUANTIZE")
    qargs = {k: v for k, v in qargs.items() if k in set(qsym.list_arguments())}
    try:  # fail here, with a clear message, rather than in C++ or at serving time
        Runner(qsym, qargs, qaux, {k: v.shape for k, v in probe.items()})(probe)
    except mx.base.MXNetError as e:
        raise EmotionMXError("the calibrated INT8 graph does not run "
                             f"({_first_error_line(e)}); exclude the layer with --exclude") from None
    info = {"calib_mode": calib_mode, "calib_examples": n, "calib_batches": len(calib_batches),
            "quantized_dtype": quantized_dtype, "excluded": excluded,
            "excluded_ops": list(excluded_ops), "ops": op_census(qsym)}
    return qsym, qargs, qaux, info


def sidecar_record(info):
    """What ``model.json`` → ``quantization`` records of a :func:`quantize_symbol` /
    :func:`search_int8` result (the one list of those keys)."""
    out = {k: info[k] for k in ("calib_mode", "calib_examples", "calib_batches", "quantized_dtype",
                                "excluded", "excluded_ops")}
    if "search" in info:
        out["chosen"] = info["search"]["chosen"]
    return out


def is_quantized(node):
    op = node["op"]
    if op.startswith(QUANTIZED_OP_PREFIXES):
        return True
    return op.startswith(FUSED_QUANTIZABLE) and str(node.get("attrs", {}).get("quantized", "")).lower() == "true"


def op_census(sym):
    """{'quantized': {op: count}, 'fp32': {op: count}} over the graph's compute nodes."""
    out = {"quantized": {}, "fp32": {}}
    for n in graph_nodes(sym):
        if n["op"] == "null" or n["op"] in ("_contrib_quantize_v2", "_contrib_dequantize", "_contrib_requantize"):
            continue
        side = "quantized" if is_quantized(n) else "fp32"
        out[side][n["op"]] = out[side].get(n["op"], 0) + 1
    return out


_QUANT_NODES = {"_contrib_quantize_v2": "quantize", "_contrib_quantize": "quantize",
                "_contrib_requantize": "requantize", "_contrib_dequantize": "dequantize"}


def int8_structure(qsym):
    """``{"int8": [names], "fp32": [names], "quantize": n, "requantize": n, "dequantize": n}``:
    the FullyConnected / Convolution / fused self-attention nodes by precision and the counts of
    the conversion nodes left in the (backend-fused) INT8 graph."""
    out = {"int8": [], "fp32": [], "quantize": 0, "requantize": 0, "dequantize": 0}
    for n in graph_nodes(qsym):
        if n["op"] in _QUANT_NODES:
            out[_QUANT_NODES[n["op"]]] += 1
        elif n["op"].startswith(("_sg_mkldnn_fully_connected", "_sg_mkldnn_conv", "_sg_mkldnn_selfatt", "FullyConnected",
                                 "Convolution", "_contrib_quantized_fully_connected", "_contrib_quantized_conv")):
            name = n["name"][len("quantized_"):] if n["name"].startswith("quantized_") else n["name"]
            out["int8" if is_quantized(n) else "fp32"].append(name)
    return out


def quantized_members(sym):
    """{original op name: quantized?} for every op, looking inside fused oneDNN nodes."""
    out = {}
    for n in graph_nodes(sym):
        if n["op"] == "null":
            continue
        q = is_quantized(n)
        for m in _members(n):
            m = m[len("quantized_"):] if m.startswith("quantized_") else m
            out[m] = out.get(m, False) or q
    return out


# --------------------------------------------------------------------------------------------
# exclusion sets chosen by measurement
# --------------------------------------------------------------------------------------------
# INT8 variants, fewest fp32 layers first.  What they are for, as measured on an AVX2 CPU
# without VNNI (benchmarks/encoders.py and benchmarks/runtimes.py print every candidate):
# INT8 residual adds and INT8 concatenations (a quantized concat of pooled mean and std) cost
# most of the agreement on Whisper + an EmoDB head, then the head's Dense layers (their inputs
# are standardised features with outliers); on the attention fusion models every quantized
# Dense adds a quantize node in front of element-wise glue (LayerNorm, softmax, transposes),
# so keeping the Dense layers fp32 and quantizing the convolutions only can be the fastest.
KEEP_FP32_OPS = ("elemwise_add", "Concat")
HEAD = ("head_", "*_head_*")                     # the classifier head (its layer-weighting GEMM)
ATTENTION_IN = ("*_qkv_*", "*_query_*", "*_key_*", "*_value_*")
DENSE_OPS = ("_sg_mkldnn_fully_connected",)     # every FullyConnected of the fused graph
INT8_CANDIDATES = (
    {"label": "everything oneDNN quantizes", "exclude": (), "excluded_ops": ()},
    {"label": "all Dense/Conv INT8; residual adds and concat fp32", "exclude": (), "excluded_ops": KEEP_FP32_OPS},
    {"label": "+ classifier head fp32", "exclude": HEAD, "excluded_ops": KEEP_FP32_OPS},
    {"label": "+ attention input projections fp32", "exclude": HEAD + ATTENTION_IN, "excluded_ops": KEEP_FP32_OPS},
    {"label": "+ attention input projections and FFN output fp32", "exclude": HEAD + ATTENTION_IN + ("*_ffn2_*",),
     "excluded_ops": KEEP_FP32_OPS},
    {"label": "convolutions only (every Dense fp32)", "exclude": (), "excluded_ops": KEEP_FP32_OPS + DENSE_OPS},
)
AGREEMENT_FLOOR = 0.97
TIE = 0.03          # latencies this close count as equal (same-run spread on an idle 2-core machine)
SELECT = ("fastest", "first")


def _present(member_names, patterns):
    """The patterns that match at least one op of the model (the others are dropped)."""
    return tuple(p for p in patterns if any(_matches(n, p) for n in member_names))


def search_int8(sym, arg_params, aux_params, names, calib_batches, valid_inputs, *, candidates=INT8_CANDIDATES,
                floor=AGREEMENT_FLOOR, select="fastest", exclude=(), calib_mode="naive", quantized_dtype=None,
                batch_size=32, rounds=3, repeats=5, fallback_steps=16, progress=None):
    """Quantize with each candidate exclusion set and keep one, chosen by measurement.

    Calibrated once (:class:`CalibrationCache`): every candidate reuses the same ranges.
    ``progress``: called with one line per candidate (the command prints it).

    1. per candidate (patterns matching no op of this model dropped; a set equal to an earlier
       one skipped; ``exclude`` — the user's — added to every set): :func:`quantize_symbol`,
       then the arg-max agreement with the fused fp32 graph on ``valid_inputs``;
    1b. if none reaches ``floor``: per-layer sensitivity (each quantizable layer INT8 alone, the
       mean |logit diff| it causes on ``valid_inputs``), then the most sensitive layers of the
       most faithful candidate are kept fp32 one by one — at most ``fallback_steps`` — until the
       floor is reached (the fallback tuning of Intel Neural Compressor, measured the same way);
    2. ``select="fastest"``: the candidates reaching ``floor`` are timed at ``batch_size`` in
       ``rounds`` interleaved rounds (the fused fp32 graph beside them) and the fastest median
       is kept; ``select="first"``: the first candidate reaching ``floor`` is kept (no timing);
    3. if none reaches ``floor``, the most faithful is kept — and said so in the result.

    Returns ``(qsym, qargs, qaux, info)`` of the kept candidate; ``info["search"]`` has the
    per-candidate table (agreement, max |logit diff|, structure, batch latency) and the reason.
    """
    from .runtime import predict
    if select not in SELECT:
        raise EmotionMXError(f"unknown INT8 selection '{select}'; choose from {', '.join(SELECT)}")
    ref = predict(sym, arg_params, aux_params, names, valid_inputs, batch_size=batch_size, backend="fused")
    fused = sym.get_backend_symbol("MKLDNN_QUANTIZE")
    cache = CalibrationCache(fused, arg_params, aux_params, names, calib_batches, calib_mode)   # calibrate once
    members = [m for n in graph_nodes(fused) if n["op"] != "null" for m in _members(n)]
    fused_ops = {n["op"] for n in graph_nodes(fused)}
    tried, built, seen = [], {}, set()
    for cand in candidates:                                                   # 1. quantize, agree
        pats = tuple(exclude) + _present(members, cand["exclude"])
        ops = tuple(o for o in cand["excluded_ops"] if o in fused_ops)
        if (pats, ops) in seen:
            continue
        seen.add((pats, ops))
        entry = {"label": cand["label"], "exclude": list(pats), "excluded_ops": list(ops)}
        tried.append(entry)
        try:
            q = quantize_symbol(sym, arg_params, aux_params, names, calib_batches, calib_mode=calib_mode,
                                exclude=pats, excluded_ops=DEFAULT_EXCLUDED_OPS + ops, quantized_dtype=quantized_dtype,
                                cache=cache)
        except EmotionMXError as e:
            entry["skipped"] = str(e)
            if progress:
                progress(f"INT8 candidate {len(tried)}: {cand['label']}: skipped ({e})")
            continue
        entry["structure"] = int8_structure(q[0])
        if not entry["structure"]["int8"]:    # e.g. "convolutions only" on Whisper: its 1-D stem stays fp32
            entry["skipped"] = "no layer of this model runs INT8 with this set"
            if progress:
                progress(f"INT8 candidate {len(tried)}: {cand['label']}: skipped (no INT8 layer)")
            continue
        logits = predict(*q[:3], names, valid_inputs, batch_size=batch_size, backend="asis")
        entry.update(argmax_agreement=float(np.mean(logits.argmax(1) == ref.argmax(1))),
                     max_abs_logit_diff=float(np.abs(logits - ref).max()))
        built[len(tried) - 1] = q
        if progress:
            progress(f"INT8 candidate {len(tried)}: {cand['label']}: agreement {entry['argmax_agreement']:.3f}")
        if select == "first" and entry["argmax_agreement"] >= floor:
            break
    if not built:
        raise EmotionMXError("no INT8 candidate could be built: " + tried[-1].get("skipped", ""))
    ok = [i for i in built if tried[i]["argmax_agreement"] >= floor]
    if not ok and fallback_steps:                                   # 1b. measured per-layer fallback
        base = max(built, key=lambda i: tried[i]["argmax_agreement"])
        if progress:
            progress(f"no candidate reached agreement {floor:.2f}: per-layer sensitivity, then up to "
                     f"{fallback_steps} layers back to fp32")
        q, entry = _sensitive_fallback(sym, arg_params, aux_params, names, calib_batches, valid_inputs, ref,
                                       tried[base], fused, floor, fallback_steps,
                                       dict(calib_mode=calib_mode, quantized_dtype=quantized_dtype,
                                            batch_size=batch_size, cache=cache))
        if q is not None:
            tried.append(entry)
            built[len(tried) - 1] = q
            ok = [i for i in built if tried[i]["argmax_agreement"] >= floor]
    if select == "first" or len(ok) < 2:                                      # 2. keep one
        keep = ok[0] if ok else max(built, key=lambda i: tried[i]["argmax_agreement"])
        reason = ("none reached the agreement floor: the most faithful" if not ok
                  else "the only set reaching the agreement floor" if len(ok) == 1
                  else "first to reach the agreement floor")
    else:
        ms = _time_interleaved([(sym, arg_params, aux_params, "fused")] + [built[i][:3] + ("asis",) for i in ok],
                               names, valid_inputs, batch_size, rounds, repeats)
        for i, t in zip(ok, ms[1:]):
            tried[i]["ms"] = t
            tried[i]["speedup_vs_fp32_fused"] = ms[0] / t
        # within TIE of the fastest, timing noise decides: the set with the fewest fp32 layers
        # (the earliest candidate) wins, which also keeps the parameters smallest
        fastest = min(tried[i]["ms"] for i in ok)
        keep = min(i for i in ok if tried[i]["ms"] <= fastest * (1 + TIE))
        reason = (f"fastest at batch {batch_size} (within {TIE:.0%}: fewest fp32 layers) of the {len(ok)} "
                  "reaching the agreement floor")
    qsym, qargs, qaux, info = built[keep]
    info["search"] = {"chosen": tried[keep]["label"], "reason": reason, "floor": floor, "select": select,
                      "candidates": tried, "calibration_passes": cache.passes}
    return qsym, qargs, qaux, info


def _sensitive_fallback(sym, arg_params, aux_params, names, calib_batches, valid_inputs, ref, base, fused, floor,
                        steps, kw):
    """``(quantized, entry)`` of the base candidate with its most sensitive layers kept fp32
    (see :func:`search_int8`, step 1b); ``(None, None)`` if no layer is left to try."""
    from .runtime import predict

    def run(exclude):
        q = quantize_symbol(sym, arg_params, aux_params, names, calib_batches, calib_mode=kw["calib_mode"],
                            exclude=exclude, excluded_ops=DEFAULT_EXCLUDED_OPS + tuple(base["excluded_ops"]),
                            quantized_dtype=kw["quantized_dtype"], cache=kw["cache"])
        return q, predict(*q[:3], names, valid_inputs, batch_size=kw["batch_size"], backend="asis")

    # a quantizable layer is named by its first op (a fused Conv+BN+ReLU by the Conv's name):
    # unique, unlike the fused node's own name, which is a prefix of others ("..._2", "..._20")
    layers = [_members(n)[1] if len(_members(n)) > 1 else n["name"]
              for n in graph_nodes(fused)
              if n["op"].startswith(FUSED_QUANTIZABLE) and n["op"] not in base["excluded_ops"]]
    layers = [l for l in layers if not any(_matches(l, p) for p in base["exclude"])]
    if not layers:
        return None, None
    sensitivity = {}
    for layer in layers:                                    # each layer INT8 alone
        _, logits = run(tuple(l for l in layers if l != layer) + tuple(base["exclude"]))
        sensitivity[layer] = float(np.abs(logits - ref).mean())
    order = sorted(layers, key=lambda l: -sensitivity[l])
    exclude = list(base["exclude"])
    for layer in order[:steps]:                             # the worst ones back to fp32
        exclude.append(layer)
        q, logits = run(tuple(exclude))
        agreement = float(np.mean(logits.argmax(1) == ref.argmax(1)))
        if agreement >= floor:
            break
    n = len(exclude) - len(base["exclude"])
    entry = {"label": f"{base['label']} + its {n} most sensitive layers fp32 (measured)", "exclude": exclude,
             "excluded_ops": list(base["excluded_ops"]), "argmax_agreement": agreement,
             "max_abs_logit_diff": float(np.abs(logits - ref).max()), "structure": int8_structure(q[0]),
             "sensitivity": {l: sensitivity[l] for l in order}}
    return q, entry


def _time_interleaved(graphs, names, inputs, batch_size, rounds, repeats):
    """Median ms per forward of each (sym, args, aux, backend) at ``batch_size``, measured in
    interleaved rounds (:func:`~.ort_runtime.compare_latency`) so that a change of the
    machine's load hits every graph alike."""
    from .ort_runtime import compare_latency
    from .runtime import Runner
    rows = np.arange(batch_size) % len(inputs[names[0]])
    batch = {k: inputs[k][rows] for k in names}
    shapes = {k: v.shape for k, v in batch.items()}
    runners = {i: Runner(s, a, x, shapes, backend=b) for i, (s, a, x, b) in enumerate(graphs)}
    res = compare_latency(runners, batch, rounds=rounds, repeats=repeats, warmup=2)
    return [res[i]["median_ms"] for i in range(len(graphs))]
