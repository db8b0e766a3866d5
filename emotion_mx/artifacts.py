"""The one module that owns artifact layout: run directories and exported models.

Run directory (written by training, read by evaluation, distillation, export, quantization)::

    RUN/config.yaml          resolved TrainConfig
    RUN/model.json           {"name", "kwargs", "modalities", "num_classes", "labels",
                              "inputs": {name: [shape without batch]}, "audio_feature", ...}
    RUN/norm.json            normalisation constants used for this run (from the store's fold)
    RUN/vocab.json           vocabulary used for this run (gluonnlp JSON), if text is used
    RUN/best.params          parameters of the epoch with the best validation score
    RUN/checkpoints/         epoch-NNNN.params / .states / .json (resumable)

Exported model directory (``tools/export.py``, read by C++, ONNX, predict, stream)::

    DIR/model-symbol.json, DIR/model-0000.params, DIR/model.json (sidecar)
"""
import os

from .contract import check_modalities, input_names
from .errors import EmotionMXError
from .fileio import read_json, write_json

MODEL_SPEC = "model.json"
BEST_PARAMS = "best.params"
NORM = "norm.json"
VOCAB = "vocab.json"
LABELS = "labels.json"
CONFIG = "config.yaml"


def run_file(run_dir, name):
    return os.path.join(run_dir, name)


def save_model_spec(run_dir, spec):
    """``spec``: dict with at least name, kwargs, modalities, num_classes, labels, inputs."""
    missing = [k for k in ("name", "kwargs", "modalities", "num_classes", "labels", "inputs") if k not in spec]
    if missing:
        raise ValueError(f"model spec lacks {missing}")
    write_json(run_file(run_dir, MODEL_SPEC), spec)


def load_model_spec(run_dir):
    path = run_file(run_dir, MODEL_SPEC)
    if not os.path.isfile(path):
        raise EmotionMXError(f"{run_dir}: not a training run (no {MODEL_SPEC}); pass the --out folder of tools/train.py")
    return read_json(path)


def build_model(spec):
    """Instantiate the (uninitialised) Gluon block described by a model spec."""
    from .models import get_model
    return get_model(spec["name"], num_classes=spec["num_classes"],
                     modalities=tuple(spec["modalities"]), **spec["kwargs"])


def load_run_model(run_dir, ctx=None, params=None):
    """Rebuild the trained block of a run with its best (or given) parameters."""
    import mxnet as mx
    spec = load_model_spec(run_dir)
    path = params or run_file(run_dir, BEST_PARAMS)
    if not os.path.isfile(path):
        raise EmotionMXError(f"{run_dir}: no parameters at {path}; the run has not finished an epoch")
    net = build_model(spec)
    try:
        net.load_parameters(path, ctx=ctx or mx.cpu())
    except Exception as e:  # corrupt or mismatched params
        raise EmotionMXError(f"{path}: cannot load parameters ({first_error_line(e)}); "
                             "the file is corrupt or from another model") from None
    return net, spec


# ---------------------------------------------------------------------------------------------
# Exported models: symbol + params + sidecar.  Everything that names, writes or reads an
# exported model directory lives below; export, quantization, ONNX, C++ and benchmarks use it.
# ---------------------------------------------------------------------------------------------

EXPORT_SYMBOL = "model-symbol.json"
EXPORT_PARAMS = "model-0000.params"
SIDECAR = MODEL_SPEC                    # DIR/model.json (same file name as the run's spec)
QUANT_REPORT = "quant_report.json"
ONNX_MODEL = "model.onnx"
SIDECAR_FORMAT = "emotion_mx.exported/1"
# Data settings copied from the run spec (top level or under "settings") into the sidecar.
FEATURE_KEYS = ("audio_feature", "audio_norm", "sample_rate", "n_mels", "win_ms", "hop_ms", "n_mfcc", "deltas",
                "prosody", "fmin", "fmax", "max_audio_frames", "max_tokens", "num_frames",
                "frame_size", "frame_channels", "face_size", "face_channels", "grayscale", "lang",
                "preprocessing")


def trace_symbol(net, names):
    """The block's graph with named inputs (``mx.sym.var(name)``), not ``data0, data1...``."""
    import mxnet as mx
    out = net(*[mx.sym.var(n) for n in names])
    if isinstance(out, (list, tuple)):
        out = out[0] if len(out) == 1 else mx.sym.Group(list(out))
    return out


def block_arrays(net, sym):
    """(arg_params, aux_params) of ``net`` that ``sym`` uses, as CPU NDArrays."""
    import mxnet as mx
    params = {p.name: p for p in net.collect_params().values()}
    args, aux = {}, {}
    for name in sym.list_arguments():
        if name in params:
            args[name] = params[name].data().as_in_context(mx.cpu())
    for name in sym.list_auxiliary_states():
        if name not in params:
            raise EmotionMXError(f"auxiliary state {name} of the traced graph is not a block parameter")
        aux[name] = params[name].data().as_in_context(mx.cpu())
    return args, aux


def save_symbol_params(out_dir, sym, arg_params, aux_params):
    """Write DIR/model-symbol.json and DIR/model-0000.params (``arg:``/``aux:`` keys), atomically.

    Refuses to write a params file without arrays (the SymbolBlock.export-before-forward trap).
    """
    import mxnet as mx
    from .fileio import atomic_path, write_text
    if not arg_params:
        raise EmotionMXError("refusing to export a model without parameters (was the block run once?)")
    data = {f"arg:{k}": v.as_in_context(mx.cpu()) for k, v in arg_params.items()}
    data.update({f"aux:{k}": v.as_in_context(mx.cpu()) for k, v in aux_params.items()})
    os.makedirs(out_dir, exist_ok=True)
    write_text(os.path.join(out_dir, EXPORT_SYMBOL), sym.tojson())
    with atomic_path(os.path.join(out_dir, EXPORT_PARAMS)) as tmp:
        mx.nd.save(tmp, data)


def load_symbol_params(model_dir):
    """(symbol, arg_params, aux_params) of an exported directory; clear errors for bad files."""
    import mxnet as mx
    sym_path, par_path = (os.path.join(model_dir, f) for f in (EXPORT_SYMBOL, EXPORT_PARAMS))
    for p in (sym_path, par_path):
        if not os.path.isfile(p):
            raise EmotionMXError(f"{model_dir}: no {os.path.basename(p)}; export the run with tools/export.py")
    try:
        sym = mx.sym.load(sym_path)
    except Exception as e:
        raise EmotionMXError(f"{sym_path}: cannot load symbol ({first_error_line(e)})") from None
    try:
        saved = mx.nd.load(par_path)
    except Exception as e:
        raise EmotionMXError(f"{par_path}: cannot load parameters ({first_error_line(e)}); the file is corrupt") from None
    if not isinstance(saved, dict) or not saved:
        raise EmotionMXError(f"{par_path}: holds no named arrays; re-export the model")
    args = {k[4:]: v for k, v in saved.items() if k.startswith("arg:")}
    aux = {k[4:]: v for k, v in saved.items() if k.startswith("aux:")}
    return sym, args, aux


def first_error_line(e):
    """The informative line of an exception's message (MXNetError messages start with a C++
    traceback: skip it and take the error line itself)."""
    lines = [l.strip() for l in str(e).strip().splitlines()
             if l.strip() and not l.startswith((" ", "\t", "Traceback", "Stack trace"))]
    errors = [l for l in lines if "Error:" in l or "Check failed" in l]
    return (errors or lines or [type(e).__name__])[0]


def make_sidecar(spec, *, batch_size=1, precision="fp32", norm=None, vocab_file=None, extra=None):
    """The exported model's self-description (DIR/model.json), built from a run's model spec."""
    modalities = list(check_modalities(spec["modalities"]))
    names = input_names(modalities)
    missing = [n for n in names if n not in spec["inputs"]]
    if missing:
        raise EmotionMXError(f"model spec lists no shape for input(s) {missing}")
    settings = dict(spec.get("settings") or {})
    settings.update({k: spec[k] for k in FEATURE_KEYS if k in spec})
    sidecar = {
        "format": SIDECAR_FORMAT,
        "precision": precision,
        "model": {"name": spec["name"], "kwargs": spec["kwargs"], "num_classes": spec["num_classes"]},
        "modalities": modalities,
        "labels": list(spec["labels"]),
        "batch_size": int(batch_size),
        "inputs": [{"name": n, "shape": [int(batch_size)] + [int(d) for d in spec["inputs"][n]],
                    "dtype": "float32"} for n in names],
        "outputs": [{"name": "logits", "shape": [int(batch_size), int(spec["num_classes"])],
                     "dtype": "float32"}],
        "features": {k: settings[k] for k in sorted(settings)},
        "normalisation": norm,
        "vocab": vocab_file,
        "symbol_file": EXPORT_SYMBOL,
        "params_file": EXPORT_PARAMS,
    }
    if extra:
        sidecar.update(extra)
    return sidecar


def read_sidecar(model_dir):
    path = os.path.join(model_dir, SIDECAR)
    if not os.path.isfile(path):
        raise EmotionMXError(f"{model_dir}: no {SIDECAR}; not an exported model (use tools/export.py)")
    sidecar = read_json(path)
    if sidecar.get("format") != SIDECAR_FORMAT:
        raise EmotionMXError(f"{path}: not an exported-model sidecar (format {sidecar.get('format')!r}, "
                             f"expected {SIDECAR_FORMAT!r}); a training run is not an exported model")
    return sidecar


def write_exported(out_dir, sym, arg_params, aux_params, sidecar, run_dir=None):
    """Write a complete exported directory: symbol, params, sidecar and the run's vocab copy."""
    import shutil
    save_symbol_params(out_dir, sym, arg_params, aux_params)
    if run_dir is not None and sidecar.get("vocab"):
        src = run_file(run_dir, VOCAB)
        if os.path.isfile(src):
            shutil.copyfile(src, os.path.join(out_dir, sidecar["vocab"]))
    write_json(os.path.join(out_dir, SIDECAR), sidecar)


def run_export_inputs(run_dir):
    """(norm dict or None, vocab file name or None) to put into a sidecar for ``run_dir``."""
    norm_path = run_file(run_dir, NORM)
    norm = read_json(norm_path) if os.path.isfile(norm_path) else None
    vocab = VOCAB if os.path.isfile(run_file(run_dir, VOCAB)) else None
    return norm, vocab


def materialize_params(net, spec, names):
    """Run one zero batch if some parameter's shape is still unknown (deferred init)."""
    import mxnet as mx
    if all(p._data is not None for p in net.collect_params().values()):
        return
    net(*[mx.nd.zeros((1,) + tuple(spec["inputs"][n])) for n in names])


def export_block(net, spec, out_dir, *, batch_size=1, run_dir=None, extra=None):
    """Export an initialised block described by ``spec`` to ``out_dir``; returns the sidecar."""
    names = input_names(spec["modalities"])
    materialize_params(net, spec, names)
    sym = trace_symbol(net, names)
    args, aux = block_arrays(net, sym)
    unknown = [a for a in sym.list_arguments() if a not in args and a not in names]
    if unknown:
        raise EmotionMXError(f"traced graph has inputs that are neither parameters nor model inputs: {unknown}")
    norm, vocab = run_export_inputs(run_dir) if run_dir else (None, None)
    sidecar = make_sidecar(spec, batch_size=batch_size, norm=norm, vocab_file=vocab,
                           extra=dict(extra or {}, source_run=os.path.abspath(run_dir) if run_dir else None))
    write_exported(out_dir, sym, args, aux, sidecar, run_dir=run_dir)
    return sidecar


def export_run(run_dir, out_dir, *, batch_size=1, params=None):
    """Export a training run's best parameters (see DESIGN.md) to ``out_dir``; returns the sidecar."""
    net, spec = load_run_model(run_dir, params=params)
    return export_block(net, spec, out_dir, batch_size=batch_size, run_dir=run_dir)


def load_exported(model_dir, ctx=None):
    """``(SymbolBlock, sidecar)`` of an exported fp32 or INT8 model; inputs in sidecar order."""
    import mxnet as mx
    from mxnet import gluon
    sidecar = read_sidecar(model_dir)
    sym, args, aux = load_symbol_params(model_dir)
    names = [i["name"] for i in sidecar["inputs"]]
    absent = [n for n in names if n not in sym.list_inputs()]
    if absent:
        raise EmotionMXError(f"{model_dir}: symbol has no input(s) {absent}; sidecar and symbol disagree")
    # imports() takes the parameter dtypes from the file (INT8 weights stay int8); it warns
    # that it cannot infer input dtypes, which is expected for untyped vars.
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        block = gluon.SymbolBlock.imports(os.path.join(model_dir, EXPORT_SYMBOL), names,
                                          os.path.join(model_dir, EXPORT_PARAMS), ctx=ctx or mx.cpu())
    return block, sidecar


def exported_input_arrays(sidecar, batch):
    """Order a dict of arrays by the sidecar's inputs, checking names, shapes (except batch), dtype."""
    import numpy as np
    out = []
    for spec in sidecar["inputs"]:
        name = spec["name"]
        if name not in batch:
            raise EmotionMXError(f"missing input '{name}' (model expects {[i['name'] for i in sidecar['inputs']]})")
        arr = np.asarray(batch[name])
        if list(arr.shape[1:]) != list(spec["shape"][1:]):
            raise EmotionMXError(f"input '{name}' has shape {list(arr.shape)}, expected [B] + {spec['shape'][1:]}")
        out.append(arr.astype(np.float32, copy=False))
    return out
