"""Symbol helpers with the canonical input names (DESIGN.md "Model inputs").

``HybridBlock.export`` names multi-input graphs ``data0, data1, ...``; ``export_named`` writes
the same files (``PREFIX-symbol.json``, ``PREFIX-%04d.params`` with ``arg:``/``aux:`` keys,
loadable by ``gluon.SymbolBlock.imports`` and the C predict API) but with inputs named
``audio, audio_mask, text, ...``.  Deployment owns the exported directory layout; these only
produce the symbol/params pair.
"""
import json

import mxnet as mx

from .registry import input_names

__all__ = ["to_symbol", "export_named", "int8_exclude_names"]


def to_symbol(net):
    """Trace ``net`` with variables named after its modalities' inputs; returns the symbol."""
    return net(*[mx.sym.var(n) for n in input_names(net.modalities)])


def export_named(net, path_prefix, epoch=0):
    """Write PREFIX-symbol.json and PREFIX-EPOCH.params; returns (sym_file, params_file).

    The block must have been initialised and run once (parameters materialised)."""
    sym = to_symbol(net)
    args, aux = set(sym.list_arguments()), set(sym.list_auxiliary_states())
    arrays = {}
    for p in net.collect_params().values():
        if p.name in args:
            arrays[f"arg:{p.name}"] = p._reduce()
        elif p.name in aux:
            arrays[f"aux:{p.name}"] = p._reduce()
    sym_file, params_file = f"{path_prefix}-symbol.json", f"{path_prefix}-{epoch:04d}.params"
    sym.save(sym_file, remove_amp_cast=True)
    mx.nd.save(params_file, arrays)
    return sym_file, params_file


def int8_exclude_names(sym):
    """Names of ops to leave in fp32 for INT8: RNN ops (no quantized RNN in a SymbolBlock,
    field notes) and the ops feeding them.  Pass to quantize_net_v2(exclude_layers=...)."""
    nodes = json.loads(sym.tojson())["nodes"]
    return [n["name"] for n in nodes if n["op"] in ("RNN", "_rnn_param_concat")]
