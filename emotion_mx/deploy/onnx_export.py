"""ONNX export of an exported fp32 model directory (opset 13), verified with onnxruntime.

``mxnet.onnx.export_model`` always targets ``onnx.defs.onnx_opset_version()``; newer opsets
reject its ReduceMean ``axes`` attribute, so the opset is pinned to 13 while it runs (field
notes).  The written file is clean for ORT: weights are initializers only (mx2onnx also lists them as
graph inputs, which blocks ORT's constant folding and Conv+BN+ReLU fusion) and the batch
dimension is symbolic.  Verification: ``onnx.checker`` and onnxruntime (all graph optimisations
on, its warnings logged and returned) vs MXNet on random inputs at two batch sizes.
"""
import contextlib
import io
import logging
import os
import re
import sys

import numpy as np

from .. import artifacts as A
from .. import contract
from ..errors import EmotionMXError
from ..optional import require
from .runtime import Runner

log = logging.getLogger(__name__)
OPSET = 13
TOLERANCE = 1e-4
# Ops without an ONNX translation in MXNet 1.9 (or not exportable in the forms our models use)
UNSUPPORTED = {"RNN": "recurrent layers (the *_crnn / *_bilstm families: MXNet's fused RNN op "
                      "has no mx2onnx translation)",
               "_contrib_interleaved_matmul_selfatt_qk": "interleaved attention ops",
               "_contrib_interleaved_matmul_selfatt_valatt": "interleaved attention ops",
               "_contrib_interleaved_matmul_encdec_qk": "interleaved attention ops",
               "_contrib_interleaved_matmul_encdec_valatt": "interleaved attention ops"}


# ---------------------------------------------------------------------------------------------
# Converters mx2onnx 1.9 lacks for ops our graphs use (registered only while export_model runs)
# ---------------------------------------------------------------------------------------------

_RESHAPE_CODES = (-2, -3, -4)


def _reshape_pieces(shape):
    """MXNet reshape codes -> pieces of the ONNX target shape, walking the input dims as MXNet's
    InferReshapeShape does: ``("dim", i, j)`` input dims i..j-1 (j None: to the end), ``("prod", i)``
    dim i x dim i+1, ``("div", i, k)`` dim i / k, ``("const", v)``.  -2 only as the last code and
    ``reverse`` are not handled (ValueError)."""
    pieces, i, j = [], 0, 0
    while j < len(shape):
        c = shape[j]
        if c == 0:
            pieces.append(("dim", i, i + 1))
            i += 1
        elif c == -2:
            if j != len(shape) - 1:
                raise ValueError(f"reshape code -2 before the end of {shape}")
            pieces.append(("dim", i, None))
        elif c == -3:
            pieces.append(("prod", i))
            i += 2
        elif c == -4:
            a, b = shape[j + 1], shape[j + 2]
            if a == -1:
                pieces += [("div", i, b), ("const", b)]
            elif b == -1:
                pieces += [("const", a), ("div", i, a)]
            else:
                pieces += [("const", a), ("const", b)]
            i += 1
            j += 2
        else:                       # a size or -1 (inferred): both consume one input dim
            pieces.append(("const", c))
            i += 1
        j += 1
    return pieces


def _convert_reshape(original):
    """``Reshape`` with the special codes -2/-3/-4 (mx2onnx converts only a few fixed patterns):
    the target shape is computed in the graph from ``Shape`` of the input, so the batch and
    sequence axes stay dynamic.  Other reshapes go to mx2onnx's own converter."""
    def convert(node, **kwargs):
        from mxnet.onnx.mx2onnx._op_translations._op_translations_opset12 import (
            convert_string_to_list, create_tensor, get_inputs)
        from onnx.helper import make_node
        name, inputs, attrs = get_inputs(node, kwargs)
        shape = convert_string_to_list(attrs["shape"])
        if attrs.get("reverse", "False") == "True" or not any(c in _RESHAPE_CODES for c in shape):
            return original(node, **kwargs)
        # every node named: ORT < 1.22 gives nameless fused Split nodes clashing names (its #24203)
        init, parts = kwargs["initializer"], []
        nodes = [make_node("Shape", [inputs[0]], [name + "_shape"], name=name + "_shape")]

        def const(values, tag):
            create_tensor(list(values), f"{name}_{tag}", init)
            return f"{name}_{tag}"

        def dims(k, i, j):
            out = f"{name}_dims{k}"
            nodes.append(make_node("Slice", [name + "_shape", const([i], f"s{k}"),
                                             const([j if j is not None else 2 ** 62], f"e{k}"),
                                             const([0], f"a{k}")], [out], name=out))
            return out

        for k, piece in enumerate(_reshape_pieces(shape)):
            if piece[0] == "const":
                parts.append(const([piece[1]], f"c{k}"))
            elif piece[0] == "dim":
                parts.append(dims(k, piece[1], piece[2]))
            elif piece[0] == "prod":
                nodes.append(make_node("Mul", [dims(k, piece[1], piece[1] + 1),
                                               dims(f"{k}b", piece[1] + 1, piece[1] + 2)], [f"{name}_p{k}"],
                                       name=f"{name}_p{k}"))
                parts.append(f"{name}_p{k}")
            else:           # div
                nodes.append(make_node("Div", [dims(k, piece[1], piece[1] + 1), const([piece[2]], f"d{k}")],
                                       [f"{name}_p{k}"], name=f"{name}_p{k}"))
                parts.append(f"{name}_p{k}")
        nodes += [make_node("Concat", parts, [name + "_target"], axis=0, name=name + "_target"),
                  make_node("Reshape", [inputs[0], name + "_target"], [name], name=name)]
        return nodes
    return convert


def _convert_convolution(original):
    """1-D ``Convolution`` (Gluon ``Conv1D``, layout NCW): ONNX ``Conv`` takes any spatial rank;
    mx2onnx only refuses the layout string."""
    def convert(node, **kwargs):
        if node.get("attrs", {}).get("layout") == "NCW":
            node = dict(node, attrs=dict(node["attrs"], layout="NCHW"))
        return original(node, **kwargs)
    return convert


EXTRA_CONVERTERS = {"Reshape": _convert_reshape, "Convolution": _convert_convolution}


@contextlib.contextmanager
def _extra_converters():
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph
    from mxnet.onnx.mx2onnx._op_translations import _op_translations_opset12  # noqa: F401 (registers)
    table = MXNetGraph.registry_.setdefault(OPSET, {})
    saved = {op: table.get(op) for op in EXTRA_CONVERTERS}
    for op, wrap in EXTRA_CONVERTERS.items():
        original = saved[op] or MXNetGraph.registry_[12][op]
        table[op] = wrap(original)
    try:
        yield
    finally:
        for op, fn in saved.items():
            if fn is None:
                table.pop(op, None)
            else:
                table[op] = fn


@contextlib.contextmanager
def _pinned_opset(version):
    # export_model converts with onnx_opset_version() and then calls helper.make_model(graph)
    # without opset_imports (which stamps the newest opset): pin both while it runs.
    require("onnx", "onnx", "ONNX export")
    import onnx.checker
    import onnx.defs
    import onnx.helper
    original_version, original_make = onnx.defs.onnx_opset_version, onnx.helper.make_model
    original_check = onnx.checker.check_graph
    ctx = onnx.checker.C.CheckerContext()
    ctx.ir_version = onnx.checker.DEFAULT_CONTEXT.ir_version
    ctx.opset_imports = {"": version}

    def check_graph(graph, context=None, *a, **kw):  # mx2onnx checks against the newest opset
        return original_check(graph, ctx, *a, **kw)

    def make_model(graph, **kw):
        kw.setdefault("opset_imports", [onnx.helper.make_opsetid("", version)])
        return original_make(graph, **kw)

    onnx.defs.onnx_opset_version = lambda: version
    onnx.helper.make_model = make_model
    onnx.checker.check_graph = check_graph
    try:
        yield
    finally:
        onnx.defs.onnx_opset_version = original_version
        onnx.helper.make_model = original_make
        onnx.checker.check_graph = original_check


def random_inputs(sidecar, batch_size=2, seed=0):
    """Contract inputs for an exported model: some padding, never an all-zero mask row."""
    return contract.random_inputs({i["name"]: i["shape"][1:] for i in sidecar["inputs"]}, batch_size=batch_size,
                                  vocab_size=sidecar["model"]["kwargs"].get("vocab_size", 50), seed=seed,
                                  masks="padded")


def clean_graph(model):
    """Move weights out of the graph inputs (mx2onnx lists every initializer as an input too).

    With weights as inputs ORT must assume a caller may override them, so it cannot constant-fold
    or fuse Conv+BatchNorm+ReLU (it warns once per tensor).  Initializers no node reads (mx2onnx
    leaves some behind, e.g. LayerNorm axes) are dropped.  Returns the number moved.
    """
    used = {name for node in model.graph.node for name in node.input}
    used |= {o.name for o in model.graph.output}
    unused = [t for t in model.graph.initializer if t.name not in used]
    for t in unused:
        model.graph.initializer.remove(t)
    inits = {t.name for t in model.graph.initializer}
    # mx2onnx leaves helper nodes nameless; ORT < 1.22 then names two fused Split nodes alike
    # and refuses the model (onnxruntime #24203): name every node
    taken = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = next(c for c in (f"{node.op_type}_{i}", f"{node.op_type}_{i}_n") if c not in taken)
            taken.add(node.name)
    keep = [i for i in model.graph.input if i.name not in inits]
    moved = len(model.graph.input) - len(keep)
    del model.graph.input[:]
    model.graph.input.extend(keep)
    return moved


def _dynamic_batch(model):
    """Mark the first dimension of every graph input and output as the symbolic ``batch``."""
    for v in list(model.graph.input) + list(model.graph.output):
        dims = v.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "batch"


def export_onnx(model_dir, onnx_path=None, verify=True, batch_size=None):
    """Write DIR/model.onnx from an exported fp32 directory; returns a verification summary.

    The file has weights as initializers only and a symbolic batch dimension; verification runs
    it in ORT with all graph optimisations on, at two batch sizes, against MXNet.
    """
    import onnx
    from mxnet.onnx import export_model
    sidecar = A.read_sidecar(model_dir)
    if sidecar.get("precision") != "fp32":
        raise EmotionMXError(f"{model_dir}: ONNX export needs an fp32 model (this one is {sidecar.get('precision')})")
    sym, args, aux = A.load_symbol_params(model_dir)
    ops = {n["op"] for n in __import__("json").loads(sym.tojson())["nodes"]}
    blocked = sorted(op for op in ops if op in UNSUPPORTED)
    if blocked:
        raise EmotionMXError(f"model {sidecar['model']['name']} cannot be exported to ONNX: it uses "
                             f"{blocked[0]} ({UNSUPPORTED[blocked[0]]}); use the MXNet/C++ export instead")
    onnx_path = onnx_path or os.path.join(model_dir, A.ONNX_MODEL)
    bs = batch_size or sidecar["batch_size"]
    order = [n for n in sym.list_inputs() if n not in args and n not in aux]
    specs = {s["name"]: s for s in sidecar["inputs"]}
    shapes = [tuple([bs] + specs[n]["shape"][1:]) for n in order]
    params = {**args, **aux}
    tmp = onnx_path + ".tmp"
    try:
        # mx2onnx prints node names on stdout; keep stdout for the tool's JSON
        with _pinned_opset(OPSET), _extra_converters(), contextlib.redirect_stdout(io.StringIO()):
            export_model(sym, params, in_shapes=shapes, in_types=[np.float32] * len(shapes),
                         onnx_file_path=tmp)
    except Exception as e:
        raise EmotionMXError(f"ONNX export failed: {A.first_error_line(e)}") from None
    model = onnx.load(tmp)
    moved = clean_graph(model)
    _dynamic_batch(model)
    onnx.save(model, tmp)
    os.replace(tmp, onnx_path)
    summary = {"onnx": onnx_path, "opset": OPSET, "inputs": order, "weights_moved_from_inputs": moved}
    if verify:
        summary.update(verify_onnx(onnx_path, sym, args, aux, sidecar, bs))
    return summary


@contextlib.contextmanager
def captured_stderr():
    """Capture what native code writes to file descriptor 2 (ORT logs there, not via Python)."""
    import tempfile
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        box = []
        try:
            yield box
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            box.extend(l for l in tmp.read().decode("utf-8", "replace").splitlines() if l.strip())


def ort_session(onnx_path, threads=None, optimize=True, spin=False):
    """An ORT CPU session with every graph optimisation on and explicit thread settings
    (:func:`~.ort_runtime.session_options`); ORT's warnings are logged (not hidden) and returned:
    ``(session, warnings)``."""
    import onnxruntime as ort
    from .ort_runtime import session_options
    opts = session_options(threads=threads, spin=spin)
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 2     # warnings and above
    with captured_stderr() as lines:
        sess = ort.InferenceSession(onnx_path, sess_options=opts, providers=["CPUExecutionProvider"])
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", l) for l in lines]       # ORT colours its log lines
    warnings = [l for l in lines if re.search(r"\[[WE]:onnxruntime", l)]
    for line in warnings:
        log.warning("onnxruntime: %s", line)
    return sess, warnings


def verify_onnx(onnx_path, sym, args, aux, sidecar, batch_size):
    onnx = require("onnx", "onnx", "ONNX export")
    require("onnxruntime", "onnx", "ONNX verification")
    model = onnx.load(onnx_path)
    onnx.checker.check_model(model)
    sess, warnings = ort_session(onnx_path)
    diff, scale = 0.0, 0.0
    for bs in sorted({int(batch_size), 3}):
        inputs = random_inputs(sidecar, batch_size=bs)
        ref = Runner(sym, args, aux, {k: v.shape for k, v in inputs.items()}, backend="plain")(inputs)
        feed = {i.name: inputs[i.name] for i in sess.get_inputs()}
        got = sess.run(None, feed)[0]
        diff = max(diff, float(np.abs(got - ref).max()))
        scale = max(scale, float(np.abs(ref).max()))
    # float32 rounding differences grow with the outputs' magnitude (random inputs can drive a
    # trained head far from its usual range): the bound is relative above logits of 1
    if not diff <= TOLERANCE * max(1.0, scale):
        raise EmotionMXError(f"onnxruntime output differs from MXNet by {diff:.3g} (> {TOLERANCE} x "
                             f"max(1, |output| {scale:.3g})); the ONNX file is not faithful")
    return {"checker": "ok", "max_abs_diff_vs_mxnet": diff, "max_abs_output": scale,
            "opset_imports": [o.version for o in model.opset_import], "ort_warnings": warnings}
