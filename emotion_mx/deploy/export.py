"""`tools/export.py`: export a run, verify the reload, optionally add ONNX."""
import os

import numpy as np

from .. import artifacts as A
from ..errors import EmotionMXError
from .onnx_export import export_onnx, random_inputs

PARITY_TOLERANCE = 1e-5


def export(run_dir, out_dir, batch_size=1, onnx=False, measure_runtime=True):
    """Export ``run_dir`` to ``out_dir``; reloads the files and checks they reproduce the block.

    With ``onnx``: also DIR/model.onnx and (``measure_runtime``) DIR/runtime.json, MXNet vs ORT
    timed on this CPU, which ``runtime="auto"`` follows."""
    import mxnet as mx
    net, spec = A.load_run_model(run_dir)
    sidecar = A.export_block(net, spec, out_dir, batch_size=batch_size, run_dir=run_dir)
    inputs = random_inputs(sidecar, batch_size=2)
    names = [i["name"] for i in sidecar["inputs"]]
    ref = net(*[mx.nd.array(inputs[n]) for n in names]).asnumpy()
    block, _ = A.load_exported(out_dir)
    got = block(*[mx.nd.array(inputs[n]) for n in names]).asnumpy()
    diff = float(np.abs(got - ref).max())
    if not diff <= PARITY_TOLERANCE:
        raise EmotionMXError(f"exported model differs from the trained block by {diff:.3g}; export is broken")
    summary = {"out": os.path.abspath(out_dir), "model": spec["name"], "inputs": sidecar["inputs"],
               "labels": sidecar["labels"], "reload_max_abs_diff": diff}
    if onnx:
        summary["onnx"] = export_onnx(out_dir)
        if measure_runtime:
            from .ort_runtime import measure_runtimes, resolve_runtime
            measure_runtimes(out_dir, measured_at="export")
            summary["runtime"] = resolve_runtime(out_dir, "auto")[1]
    return summary
