"""ONNX export of an exported fp32 model directory (opset 13), verified with onnxruntime.

``mxnet.onnx.export_model`` always targets ``onnx.defs.onnx_opset_version()``; newer opsets
reject its ReduceMean ``axes`` attribute, so the opset is pinned to 13 while it runs (field
notes).  Verification: ``onnx.checker`` and onnxruntime outputs vs MXNet on random inputs.
"""
import contextlib
import io
import logging
import os

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


def export_onnx(model_dir, onnx_path=None, verify=True, batch_size=None):
    """Write DIR/model.onnx from an exported fp32 directory; returns a verification summary."""
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
    try:
        # mx2onnx prints node names on stdout; keep stdout for the tool's JSON
        with _pinned_opset(OPSET), contextlib.redirect_stdout(io.StringIO()):
            export_model(sym, params, in_shapes=shapes, in_types=[np.float32] * len(shapes),
                         onnx_file_path=onnx_path)
    except Exception as e:
        raise EmotionMXError(f"ONNX export failed: {A.first_error_line(e)}") from None
    summary = {"onnx": onnx_path, "opset": OPSET, "inputs": order}
    if verify:
        summary.update(verify_onnx(onnx_path, sym, args, aux, sidecar, bs))
    return summary


def verify_onnx(onnx_path, sym, args, aux, sidecar, batch_size):
    onnx = require("onnx", "onnx", "ONNX export")
    ort = require("onnxruntime", "onnx", "ONNX verification")
    model = onnx.load(onnx_path)
    onnx.checker.check_model(model)
    inputs = random_inputs(sidecar, batch_size=batch_size)
    ref = Runner(sym, args, aux, {k: v.shape for k, v in inputs.items()}, backend="plain")(inputs)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3     # mx2onnx leaves initializers in graph inputs: ort warns per tensor
    sess = ort.InferenceSession(onnx_path, sess_options=opts, providers=["CPUExecutionProvider"])
    feed = {i.name: inputs[i.name] for i in sess.get_inputs()}
    got = sess.run(None, feed)[0]
    diff = float(np.abs(got - ref).max())
    if not diff <= TOLERANCE:
        raise EmotionMXError(f"onnxruntime output differs from MXNet by {diff:.3g} (> {TOLERANCE}); "
                             "the ONNX file is not faithful")
    return {"checker": "ok", "max_abs_diff_vs_mxnet": diff, "opset_imports": [o.version for o in model.opset_import]}
