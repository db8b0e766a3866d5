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
    a fused node if it matches the node or any op fused into it.  Unmatched patterns are an
    error (a typo would otherwise silently quantize the layer).
    """
    nodes = [n for n in graph_nodes(fused_sym) if n["op"] != "null"]
    out, unmatched = {}, []
    for pat in patterns:
        hit = [n["name"] for n in nodes if any(_matches(m, pat) for m in _members(n))]
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


def _probe_graph(fused, arg_params, aux_params, names, probe, excluded, excluded_ops, quantized_dtype):
    """The backend-fused INT8 graph calibrated (naive) on the probe batch alone.

    Calibrated, not raw: an uncalibrated quantize node emits int8 where the calibrated one emits
    uint8 (non-negative ranges, e.g. softmax probabilities with ``quantized_dtype='auto'``), and
    oneDNN's quantized self-attention value op accepts only the latter."""
    import mxnet as mx
    from mxnet.contrib.quantization import calib_graph, quantize_graph
    qsym, _, _, collector = quantize_graph(
        fused, arg_params, aux_params, ctx=mx.cpu(), excluded_sym_names=sorted(excluded),
        excluded_op_names=list(excluded_ops), calib_mode="naive", quantized_dtype=quantized_dtype,
        quantize_mode="full", logger=None)
    _Calibrator(fused, arg_params, aux_params, names).run([probe], collector)
    qsym, qargs, qaux = calib_graph(qsym, arg_params, aux_params, collector, calib_mode="naive",
                                    quantized_dtype=quantized_dtype, logger=None)
    qsym = qsym.get_backend_symbol("MKLDNN_QUANTIZE")
    return qsym, {k: v for k, v in qargs.items() if k in set(qsym.list_arguments())}, qaux


class _Thresholds:
    """A filled 'customize' collector: {layer output: (min, max)}."""

    def __init__(self, min_max_dict):
        self.min_max_dict = min_max_dict


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


def quantize_symbol(sym, arg_params, aux_params, names, calib_batches, calib_mode="naive",
                    exclude=(), excluded_ops=DEFAULT_EXCLUDED_OPS, quantized_dtype="int8",
                    max_rounds=20):
    """INT8 symbol and params for an fp32 graph with named inputs.

    ``calib_batches``: a sequence of dicts name → float32 array (training split).
    Returns ``(qsym, qarg_params, qaux_params, info)``; ``info`` has ``excluded``
    ({fused node: reason}), ``calib_examples`` and the operator census of the result.
    """
    import mxnet as mx
    from mxnet.contrib.quantization import calib_graph, quantize_graph
    if calib_mode not in CALIB_MODES:
        raise EmotionMXError(f"unknown calibration mode '{calib_mode}'; choose from {', '.join(CALIB_MODES)}")
    calib_batches = list(calib_batches)
    if not calib_batches:
        raise EmotionMXError("no calibration batches (the training split is empty?)")
    fused = sym.get_backend_symbol("MKLDNN_QUANTIZE")
    excluded = resolve_exclusions(fused, list(exclude))
    probe = {n: np.asarray(calib_batches[0][n], dtype=np.float32) for n in names}
    for _ in range(max_rounds):
        qsym, qargs, qaux, collector = quantize_graph(
            fused, arg_params, aux_params, ctx=mx.cpu(), excluded_sym_names=sorted(excluded),
            excluded_op_names=list(excluded_ops), calib_mode=calib_mode,
            quantized_dtype=quantized_dtype, quantize_mode="full", logger=None)
        bad = {k: v for k, v in unsafe_nodes(qsym, arg_params).items() if k not in excluded}
        if not bad:
            bad = _runtime_failures(*_probe_graph(fused, arg_params, aux_params, names, probe, excluded,
                                                  excluded_ops, quantized_dtype), probe, excluded)
        if not bad:
            break
        for k, v in bad.items():
            log.info("keeping %s in fp32: %s", k, v)
        excluded.update(bad)
    else:
        raise EmotionMXError("quantization kept finding unsupported patterns; exclude more layers with --exclude")
    n = _Calibrator(fused, arg_params, aux_params, names).run(calib_batches, collector)
    mode = calib_mode
    if calib_mode == "entropy":
        # MXNet computes symmetric (-th, th) entropy thresholds for int8 even for non-negative
        # (ReLU) outputs, which oneDNN then emits as uint8: the next quantized conv fails with
        # "Expect int8 when data_min < 0.0".  Thresholds computed the 'auto' way give (0, th)
        # there, like naive calibration does.
        from mxnet.contrib.quantization import _get_optimal_thresholds
        collector = _Thresholds(_get_optimal_thresholds(collector.hist_dict, "auto"))
        mode = "customize"
    qsym, qargs, qaux = calib_graph(qsym, arg_params, aux_params, collector,
                                    calib_mode=mode, quantized_dtype=quantized_dtype, logger=None)
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
