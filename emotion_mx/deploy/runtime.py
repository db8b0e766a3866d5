"""Running exported symbols on CPU executors: binding (plain / oneDNN-fused), inference, timing.

Three ways to run the same fp32 graph are compared in the INT8 report:

* ``plain``  — the graph as exported, bound with ``MXNET_SUBGRAPH_BACKEND=NONE`` (MXNet 1.9's
  CPU wheel otherwise fuses with oneDNN at bind time by default);
* ``fused``  — ``sym.get_backend_symbol('MKLDNN')`` (Conv+BN+ReLU, FC+activation fusion),
  which is also what the C predict API and ``SymbolBlock`` run by default;
* INT8 graphs are already fused by quantization and are bound as they are.
"""
import contextlib
import os
import statistics
import time

import numpy as np

from ..errors import EmotionMXError

BACKENDS = ("plain", "fused", "asis")


@contextlib.contextmanager
def _subgraph_backend(value):
    key = "MXNET_SUBGRAPH_BACKEND"
    old = os.environ.get(key)
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


class Runner:
    """A bound executor for one symbol and one set of input shapes."""

    def __init__(self, sym, arg_params, aux_params, input_shapes, backend="asis"):
        import mxnet as mx
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}")
        self.names = list(input_shapes)
        if backend == "fused":
            sym = sym.get_backend_symbol("MKLDNN")
        args = {k: v for k, v in arg_params.items() if k in set(sym.list_arguments())}
        for n, shape in input_shapes.items():
            args[n] = mx.nd.zeros(shape, dtype="float32")
        aux = {k: aux_params[k] for k in sym.list_auxiliary_states()}
        missing = [a for a in sym.list_arguments() if a not in args]
        if missing:
            raise EmotionMXError(f"graph inputs without values: {missing[:5]}")
        # 'plain' must not be fused at bind time; the others keep MXNet's default.
        with _subgraph_backend("NONE" if backend == "plain" else None):
            self.exe = sym.bind(mx.cpu(), args, aux_states=aux, grad_req="null")
        self.sym = sym

    def __call__(self, inputs):
        """``inputs``: list (input order) or dict of numpy arrays → numpy outputs[0]."""
        if isinstance(inputs, dict):
            inputs = [inputs[n] for n in self.names]
        for n, x in zip(self.names, inputs):
            self.exe.arg_dict[n][:] = x
        return self.exe.forward(is_train=False)[0].asnumpy()

    def latency_ms(self, inputs, repeats=50, warmup=5):
        """Median and p95 wall time of forward + copy-out, in milliseconds."""
        for _ in range(warmup):
            self(inputs)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            self(inputs)
            times.append((time.perf_counter() - t0) * 1e3)
        return {"median_ms": statistics.median(times),
                "p95_ms": float(np.percentile(times, 95)), "repeats": repeats}


def predict(sym, arg_params, aux_params, names, arrays, batch_size=32, backend="asis"):
    """Logits for all rows of ``arrays`` (dict name → (N, ...)), in fixed-size batches.

    The last partial batch is zero-padded so one executor (one set of shapes) serves all.
    """
    n = len(arrays[names[0]])
    if n == 0:
        raise EmotionMXError("no samples to run")
    shapes = {k: (batch_size,) + tuple(arrays[k].shape[1:]) for k in names}
    runner = Runner(sym, arg_params, aux_params, shapes, backend=backend)
    outs = []
    for start in range(0, n, batch_size):
        chunk = []
        for k in names:
            x = arrays[k][start:start + batch_size]
            if len(x) < batch_size:
                x = np.concatenate([x, np.zeros((batch_size - len(x),) + x.shape[1:], x.dtype)])
            chunk.append(x)
        outs.append(runner(chunk)[: min(batch_size, n - start)])
    return np.concatenate(outs)


def softmax(logits):
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
