"""Parameter and multiply-add (MAC) counts of a preset, from its symbol graph.

``summarize(name, num_classes=4, modalities=None, batch_size=1, **kw) -> dict(params, macs,
macs_by_op)``.

* ``params``: trainable parameters (grad_req != 'null'); BatchNorm running statistics are
  not counted.
* ``macs``: multiply-accumulates of one forward pass at ``batch_size`` (default 1) and the
  feature shapes given by ``kw`` (FEATURE_DEFAULTS otherwise), counted analytically from the
  shapes that ``infer_shape`` gives every node of the hybridized symbol:
  FullyConnected = out elements x in features; Convolution = out elements x (C_in/groups x
  kh x kw); batch_dot = out elements x contracted dim; RNN = per step, layer and direction
  gates x (in + hidden) x hidden; Embedding, elementwise ops, softmax, LayerNorm, BatchNorm,
  pooling and reshapes count 0.
"""
import json

import mxnet as mx
import numpy as np

from ..contract import input_names, input_shapes, random_inputs
from .registry import FEATURE_DEFAULTS, get_model

__all__ = ["summarize", "example_inputs", "count_macs"]

_GATES = {"lstm": 4, "gru": 3, "rnn_relu": 1, "rnn_tanh": 1}


def _feature_kw(name, kw):
    out = dict(FEATURE_DEFAULTS)
    out.update({k: v for k, v in kw.items() if k in FEATURE_DEFAULTS})
    return out


def example_inputs(modalities, batch_size=1, audio_dim=64, audio_frames=300, vocab_size=5000,
                   max_tokens=32, num_frames=8, frame_size=48, frame_channels=1, seed=0,
                   ctx=None):
    """Random NDArray inputs in canonical positional order for ``modalities`` (full masks)."""
    shapes = input_shapes(modalities, audio_frames=audio_frames, audio_dim=audio_dim, max_tokens=max_tokens,
                          num_frames=num_frames, frame_channels=frame_channels, frame_size=frame_size)
    arrays = random_inputs(shapes, batch_size=batch_size, vocab_size=vocab_size, seed=seed)
    return [mx.nd.array(x, ctx=ctx) for x in arrays.values()]


def count_macs(sym, input_shapes):
    """MACs of symbol ``sym`` given {input name: shape}; returns (total, {op: macs})."""
    internals = sym.get_internals()
    _, out_shapes, _ = internals.infer_shape(**input_shapes)
    arg_shapes, _, aux_shapes = sym.infer_shape(**input_shapes)
    shapes = dict(zip(internals.list_outputs(), out_shapes))
    shapes.update(zip(sym.list_arguments(), arg_shapes))
    shapes.update(zip(sym.list_auxiliary_states(), aux_shapes))
    nodes = json.loads(sym.tojson())["nodes"]

    def in_shape(entry):
        node = nodes[entry[0]]
        key = node["name"] if node["op"] == "null" else f"{node['name']}_output"
        return shapes[key]

    by_op = {}
    for node in nodes:
        op = node["op"]
        if op not in ("FullyConnected", "Convolution", "batch_dot", "RNN"):
            continue
        out = shapes[f"{node['name']}_output"]
        attrs = node.get("attrs", {})
        if op in ("FullyConnected", "Convolution"):
            w = in_shape(node["inputs"][1])
            macs = int(np.prod(out)) * int(np.prod(w[1:]))
        elif op == "batch_dot":
            a = in_shape(node["inputs"][0])
            k = a[-2] if attrs.get("transpose_a", "False") in ("True", "true", "1") else a[-1]
            macs = int(np.prod(out)) * int(k)
        else:  # RNN, input (T, B, I) (time-major inside Gluon's RNN layers)
            t, b, i = in_shape(node["inputs"][0])
            h = int(attrs["state_size"])
            layers = int(attrs.get("num_layers", 1))
            dirs = 2 if attrs.get("bidirectional", "False") in ("True", "true", "1") else 1
            g = _GATES[attrs["mode"]]
            macs = 0
            for layer in range(layers):
                width = i if layer == 0 else h * dirs
                macs += dirs * t * b * g * (width + h) * h
        by_op[op] = by_op.get(op, 0) + macs
    return sum(by_op.values()), by_op


def summarize(name, num_classes=4, modalities=None, batch_size=1, **kw):
    """{'params': trainable parameter count, 'macs': forward MACs, 'macs_by_op': {...}}."""
    net = get_model(name, num_classes, modalities=modalities, **kw)
    net.initialize(mx.init.Xavier())
    feats = _feature_kw(name, kw)
    inputs = example_inputs(net.modalities, batch_size=batch_size, **feats)
    net(*inputs)                                        # materialise deferred shapes
    params = sum(int(np.prod(p.shape)) for p in net.collect_params().values()
                 if p.grad_req != "null")
    names = input_names(net.modalities)
    sym = net(*[mx.sym.var(n) for n in names])
    macs, by_op = count_macs(sym, {n: x.shape for n, x in zip(names, inputs)})
    return {"params": params, "macs": macs, "macs_by_op": by_op}
