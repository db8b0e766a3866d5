"""The one module that owns artifact layout: run directories and exported models.

Run directory (written by training, read by evaluation, distillation, export, quantization)::

    RUN/config.yaml          resolved TrainConfig
    RUN/model.json           ModelSpec: {"format": "emotion_mx.run/2", "name", "kwargs",
                              "modalities", "num_classes", "labels", "inputs": {name: [shape
                              without batch]}, "data": DataSettings, "fold", "store", ...}
    RUN/norm.json            normalisation constants used for this run (from the store's fold)
    RUN/vocab.json           vocabulary used for this run (gluonnlp JSON), if text is used
    RUN/best.params          parameters of the epoch with the best validation score
    RUN/checkpoints/         epoch-NNNN.params / .states / .json (resumable)

MXNet (and the models and vocabularies, which need it) is imported inside the functions that use
it: an exported model served by ONNX Runtime reads its sidecar here without importing MXNet.

Exported model directory (``tools/export.py``, read by C++, ONNX, predict, stream)::

    DIR/model-symbol.json, DIR/model-0000.params, DIR/model.json (sidecar, SIDECAR_FORMAT:
    "features" holds the DataSettings; optional "frontend": {"audio": {"kind": "whisper_logmel",
    ...constants}} for models on Whisper log-mel, so C++ computes them from raw audio), DIR/vocab.json

Both JSON files are read through one function each (:func:`load_model_spec`,
:func:`read_sidecar`), which also upgrades the previous layout (format 1: data settings flat
or under "settings"); anything older is refused with a clear error.  :func:`load_run_split`
reads a store split exactly as a run or an exported model was trained.
"""
import math
import os
import shutil
import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Tuple

import numpy as np

from .contract import MODALITIES, check_modalities, input_names
from .data import load_split
from .errors import EmotionMXError
from .fileio import atomic_path, ensure_output_dir, read_json, write_json, write_text
from .manifest import inside_root
from .records import Record, plain
from .store import DataSettings, FeatureStore

MODEL_SPEC = "model.json"
BEST_PARAMS = "best.params"
NORM = "norm.json"
VOCAB = "vocab.json"
TOKENIZER = "tokenizer.json"             # the run's copy of MiniLM's WordPiece (text_ids: wordpiece)
LABELS = "labels.json"
CONFIG = "config.yaml"


def run_file(run_dir, name):
    return os.path.join(run_dir, name)


RUN_FORMAT = "emotion_mx.run/2"
_SPEC_REQUIRED = ("name", "kwargs", "modalities", "num_classes", "labels", "inputs")


@dataclass(frozen=True)
class ModelSpec(Record):
    """A run's model: what to build (name, kwargs, modalities, classes), its inputs and the
    data settings that prepare them; readable as a mapping (``spec["labels"]``)."""
    name: str
    kwargs: Mapping[str, Any]
    modalities: Tuple[str, ...]
    num_classes: int
    labels: Tuple[str, ...]
    inputs: Mapping[str, Any]            # {input name: shape without the batch axis}
    data: DataSettings
    fold: Optional[int] = None
    store: Optional[str] = None
    precision: Optional[str] = None
    warm_start: Optional[Mapping[str, Any]] = None
    distilled_from: Optional[str] = None
    format: str = RUN_FORMAT

    def __post_init__(self):
        object.__setattr__(self, "modalities", check_modalities(self.modalities))
        object.__setattr__(self, "labels", tuple(self.labels))
        missing = [n for n in input_names(self.modalities) if n not in self.inputs]
        if missing:
            raise EmotionMXError(f"model spec lists no shape for input(s) {missing}")

    @classmethod
    def from_dict(cls, data, where="model spec"):
        """A spec from its JSON form, current or format 1 (data settings flat at the top level
        or under "settings"; unknown keys of the old layout are dropped)."""
        if isinstance(data, ModelSpec):
            return data
        missing = [k for k in _SPEC_REQUIRED if k not in data]
        if missing:
            raise EmotionMXError(f"{where}: lacks {', '.join(missing)}; not a model spec")
        data = dict(data)
        if data.get("format") is None:
            flat = {**(data.pop("settings", None) or {}), **data}
            data = {k: v for k, v in data.items() if k in cls.field_names()}
            data["data"] = DataSettings.from_legacy(flat, data["modalities"])
        elif data["format"] != RUN_FORMAT:
            raise EmotionMXError(f"{where}: format {data['format']!r} is not {RUN_FORMAT!r}; "
                                 "written by a newer emotion_mx?")
        else:
            cls.check_keys(data, where)
            if not isinstance(data["data"], DataSettings):
                data["data"] = DataSettings.from_dict(data["data"], f"{where}: data")
        data.pop("format", None)
        return cls(**data)


def save_model_spec(run_dir, spec):
    """Write RUN/model.json from a :class:`ModelSpec` (or its JSON form)."""
    write_json(run_file(run_dir, MODEL_SPEC), ModelSpec.from_dict(spec).to_dict())


def _read_json_file(path):
    """JSON of ``path`` or one line saying why it cannot be read (never a traceback)."""
    try:
        return read_json(path)
    except (ValueError, UnicodeDecodeError) as e:
        raise EmotionMXError(f"{path}: not valid JSON ({str(e).splitlines()[0]})") from None
    except OSError as e:
        raise EmotionMXError(f"{path}: cannot read ({e.strerror or e})") from None


def _fail(path, key, what):
    raise EmotionMXError(f"{path}: field '{key}' {what}; the file is damaged or not from emotion_mx")


def _check_shape(path, key, shape, leading_batch=False):
    if not isinstance(shape, list) or not shape or \
            not all(isinstance(d, int) and not isinstance(d, bool) and 0 < d < 2 ** 31 for d in shape):
        _fail(path, key, f"must be a list of positive integers, got {shape!r}")


def check_model_spec(spec, path):
    """Validate a run's model.json (the one loader every tool goes through)."""
    if not isinstance(spec, dict):
        _fail(path, "(top level)", "must be a JSON object")
    if not isinstance(spec.get("name"), str):
        _fail(path, "name", "must be a model name string")
    if not isinstance(spec.get("kwargs"), dict):
        _fail(path, "kwargs", "must be an object")
    mods = spec.get("modalities")
    if not isinstance(mods, list) or not mods or any(m not in MODALITIES for m in mods):
        _fail(path, "modalities", f"must be a non-empty list of {', '.join(MODALITIES)}")
    n = spec.get("num_classes")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 100000:
        _fail(path, "num_classes", "must be a positive integer")
    labels = spec.get("labels")
    if not isinstance(labels, list) or len(labels) != n or not all(isinstance(x, str) for x in labels):
        _fail(path, "labels", f"must be a list of {n} label strings")
    inputs = spec.get("inputs")
    if not isinstance(inputs, dict):
        _fail(path, "inputs", "must be an object of input shapes")
    for name, shape in inputs.items():
        _check_shape(path, f"inputs.{name}", shape)
    return spec


def load_model_spec(run_dir):
    path = run_file(run_dir, MODEL_SPEC)
    if not os.path.isfile(path):
        raise EmotionMXError(f"{run_dir}: not a training run (no {MODEL_SPEC}); pass the --out folder of tools/train.py")
    spec = check_model_spec(_read_json_file(path), path)
    return _typed(lambda: ModelSpec.from_dict(spec, where=path), path)


def _typed(build, path):
    """``build()``, with a wrong-typed field of a damaged file as one error line."""
    try:
        return build()
    except EmotionMXError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError) as e:
        raise EmotionMXError(f"{path}: {type(e).__name__}: {e}; the file is damaged or not from emotion_mx") from None


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
SIDECAR_FORMAT = "emotion_mx.exported/2"
SIDECAR_FORMAT_V1 = "emotion_mx.exported/1"   # "features": flat run-spec keys; upgraded on read


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
    if not arg_params:
        raise EmotionMXError("refusing to export a model without parameters (was the block run once?)")
    data = {f"arg:{k}": v.as_in_context(mx.cpu()) for k, v in arg_params.items()}
    data.update({f"aux:{k}": v.as_in_context(mx.cpu()) for k, v in aux_params.items()})
    ensure_output_dir(out_dir, "--out")
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


def check_params_match(sym, args, aux, input_shapes, where):
    """Every argument and auxiliary state of ``sym`` (other than the inputs) must be in the
    parameter file with the shape the graph infers from ``input_shapes``: parameters of
    another graph otherwise load silently and give wrong (e.g. 3- instead of 4-class) outputs."""
    try:
        arg_shapes, _, aux_shapes = sym.infer_shape_partial(**input_shapes)
    except Exception as e:
        raise EmotionMXError(f"{where}: the symbol does not accept the sidecar's input shapes "
                             f"({first_error_line(e)})") from None
    for names, shapes, have, kind in ((sym.list_arguments(), arg_shapes, args, "arg"),
                                      (sym.list_auxiliary_states(), aux_shapes, aux, "aux")):
        for name, shape in zip(names, shapes or [None] * len(names)):
            if name in input_shapes:
                continue
            if name not in have:
                raise EmotionMXError(f"{where}: the parameter file does not belong to this graph: it has "
                                     f"no '{kind}:{name}' (export the symbol and parameters together)")
            if shape and all(shape) and tuple(have[name].shape) != tuple(shape):
                raise EmotionMXError(f"{where}: the parameter file does not belong to this graph: "
                                     f"'{kind}:{name}' is {list(have[name].shape)}, the graph expects {list(shape)}")


def first_error_line(e):
    """The informative line of an exception's message (MXNetError messages start with a C++
    traceback: skip it and take the error line itself)."""
    lines = [l.strip() for l in str(e).strip().splitlines()
             if l.strip() and not l.startswith((" ", "\t", "Traceback", "Stack trace"))]
    errors = [l for l in lines if "Error:" in l or "Check failed" in l]
    return (errors or lines or [type(e).__name__])[0]


def make_sidecar(spec, *, batch_size=1, precision="fp32", norm=None, vocab_file=None, extra=None):
    """The exported model's self-description (DIR/model.json), built from a run's model spec."""
    spec = ModelSpec.from_dict(spec)
    names = input_names(spec.modalities)
    sidecar = {
        "format": SIDECAR_FORMAT,
        "precision": precision,
        "model": {"name": spec.name, "kwargs": plain(spec.kwargs), "num_classes": spec.num_classes},
        "modalities": list(spec.modalities),
        "labels": list(spec["labels"]),
        "batch_size": int(batch_size),
        "inputs": [{"name": n, "shape": [int(batch_size)] + [int(d) for d in spec["inputs"][n]],
                    "dtype": "float32"} for n in names],
        "outputs": [{"name": "logits", "shape": [int(batch_size), int(spec["num_classes"])],
                     "dtype": "float32"}],
        "features": spec.data.to_dict(),
        "normalisation": norm,
        "vocab": vocab_file,
        "symbol_file": EXPORT_SYMBOL,
        "params_file": EXPORT_PARAMS,
    }
    if "audio" in spec.modalities and spec.data.audio_feature == "whisper_logmel":  # C++ raw-audio front end
        from .config import AudioConfig, from_dict
        from .features.whisper_frontend import WHISPER_FRONTEND
        # max_seconds: the waveform is cut there before the front end, as the store build does
        audio = from_dict(AudioConfig, (spec.data.preprocessing or {}).get("audio"), "model spec", "audio.")
        sidecar["frontend"] = {"audio": {"kind": "whisper_logmel", **WHISPER_FRONTEND,
                                         "max_seconds": audio.max_seconds,
                                         **({"trim_db": audio.trim_db} if audio.trim_db else {})}}
    if extra:
        sidecar.update(extra)
    return sidecar


def read_sidecar(model_dir):
    path = os.path.join(model_dir, SIDECAR)
    if not os.path.isfile(path):
        raise EmotionMXError(f"{model_dir}: no {SIDECAR}; not an exported model (use tools/export.py)")
    sidecar = _read_json_file(path)
    fmt = sidecar.get("format") if isinstance(sidecar, dict) else None
    if fmt not in (SIDECAR_FORMAT, SIDECAR_FORMAT_V1):
        raise EmotionMXError(f"{path}: not an exported-model sidecar (format {fmt!r}, "
                             f"expected {SIDECAR_FORMAT!r}); a training run is not an exported model")
    check_sidecar(sidecar, path, model_dir)
    return _typed(lambda: _upgrade_sidecar(sidecar, fmt, path), path)


def _upgrade_sidecar(sidecar, fmt, path):
    if fmt == SIDECAR_FORMAT_V1:   # upgraded here, once; the input shapes are authoritative for the lengths
        shapes = {i["name"]: i["shape"][1:] for i in sidecar["inputs"]}
        lengths = dict(zip(("max_audio_frames",), shapes.get("audio", [])[:1]),
                       **dict(zip(("max_tokens",), shapes.get("text", [])[:1])),
                       **dict(zip(("num_frames", "frame_channels", "frame_size"), shapes.get("video", [])[:3])))
        sidecar["features"] = DataSettings.from_legacy({**(sidecar.get("features") or {}), **lengths},
                                                       sidecar["modalities"]).to_dict()
        sidecar["format"] = SIDECAR_FORMAT
    else:
        sidecar["features"] = DataSettings.from_dict(sidecar.get("features") or {}, f"{path}: features").to_dict()
    return sidecar


def check_sidecar(sidecar, path, model_dir):
    """Validate an exported model's sidecar: types, shapes, and every file it names must be a
    file inside ``model_dir`` (after symlinks): a model folder from someone else is untrusted."""
    mods = sidecar.get("modalities")
    if not isinstance(mods, list) or not mods or any(m not in MODALITIES for m in mods):
        _fail(path, "modalities", f"must be a non-empty list of {', '.join(MODALITIES)}")
    if not isinstance(sidecar.get("model"), dict):
        _fail(path, "model", "must be an object")
    labels = sidecar.get("labels")
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        _fail(path, "labels", "must be a non-empty list of label strings")
    for key in ("inputs", "outputs"):
        entries = sidecar.get(key)
        if not isinstance(entries, list) or not entries:
            _fail(path, key, "must be a non-empty list")
        for i, e in enumerate(entries):
            if not isinstance(e, dict) or not isinstance(e.get("name"), str):
                _fail(path, f"{key}[{i}]", "must be an object with a 'name'")
            _check_shape(path, f"{key}[{i}].shape", e.get("shape"))
    for key in ("features", "normalisation"):
        if sidecar.get(key) is not None and not isinstance(sidecar[key], dict):
            _fail(path, key, "must be an object or null")
    for feature, stats in (sidecar.get("normalisation") or {}).items():
        # bad statistics would turn every input into NaN, reported as a problem of the input
        for part in ("mean", "std"):
            values = stats.get(part) if isinstance(stats, dict) else None
            if values is None:
                continue
            values = values if isinstance(values, list) else [values]
            for i, v in enumerate(values):
                where = f"normalisation.{feature}.{part}[{i}]"
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or \
                        (part == "std" and v <= 0):
                    _fail(path, where, f"is {v!r}, not a finite{' positive' if part == 'std' else ''} number "
                                       "(export the run again with tools/export.py)")
    for key in ("vocab", "symbol_file", "params_file"):
        ref = sidecar.get(key)
        if ref is None:
            continue
        if not isinstance(ref, str) or inside_root(model_dir, ref) is None:
            _fail(path, key, f"names {ref!r}, which is outside the model folder (symlinks followed)")
    return sidecar


def exported_settings(sidecar):
    """The :class:`DataSettings` of an exported model."""
    return DataSettings.from_dict(sidecar["features"])


def run_data(model_dir):
    """``(spec or sidecar, DataSettings, norm, vocab)`` of a run or an exported directory."""
    if os.path.isfile(os.path.join(model_dir, EXPORT_SYMBOL)):
        sidecar = read_sidecar(model_dir)
        vocab = sidecar.get("vocab") and os.path.join(model_dir, sidecar["vocab"])
        return sidecar, exported_settings(sidecar), sidecar.get("normalisation"), vocab
    spec = load_model_spec(model_dir)
    norm, vocab = run_export_inputs(model_dir)
    return spec, spec.data, norm, vocab and run_file(model_dir, vocab)


def load_run_split(model_dir, store, split, fold, *, limit=None):
    """:class:`~emotion_mx.data.Split` ``split`` of fold ``fold`` of ``store`` (a path or a
    :class:`FeatureStore`) prepared exactly as the run or exported model in ``model_dir`` was
    trained: its data settings, its normalisation and vocabulary, never the store's."""
    from .store import load_text_vocab
    store = store if isinstance(store, FeatureStore) else FeatureStore(store)
    meta, settings, norm, vocab = run_data(model_dir)
    if list(store.labels) != list(meta["labels"]):
        raise EmotionMXError(f"{store.path} has labels {store.labels}, the model was trained on {list(meta['labels'])}")
    ids = store.ids(fold, split)[:limit]
    if not ids:
        raise EmotionMXError(f"{store.path}: fold {fold} has no {split} items")
    vocab = (load_text_vocab(vocab, settings) if "text" in settings.modalities and vocab and os.path.isfile(vocab)
             else None)
    return load_split(store, fold, split, settings, norm=norm, vocab=vocab, ids=ids)


def write_exported(out_dir, sym, arg_params, aux_params, sidecar, run_dir=None):
    """Write a complete exported directory: symbol, params, sidecar and the run's vocab copy."""
    save_symbol_params(out_dir, sym, arg_params, aux_params)
    if run_dir is not None and sidecar.get("vocab"):
        src = run_file(run_dir, sidecar["vocab"])
        if os.path.isfile(src):
            shutil.copyfile(src, os.path.join(out_dir, sidecar["vocab"]))
    write_json(os.path.join(out_dir, SIDECAR), sidecar)


def run_export_inputs(run_dir):
    """(norm dict or None, vocab file name or None) to put into a sidecar for ``run_dir``."""
    norm_path = run_file(run_dir, NORM)
    norm = read_json(norm_path) if os.path.isfile(norm_path) else None
    vocab = next((f for f in (VOCAB, TOKENIZER) if os.path.isfile(run_file(run_dir, f))), None)
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
                           extra={"source_run": os.path.abspath(run_dir) if run_dir else None, **(extra or {})})
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
    check_params_match(sym, args, aux, {i["name"]: tuple(i["shape"]) for i in sidecar["inputs"]}, model_dir)
    # imports() takes the parameter dtypes from the file (INT8 weights stay int8); it warns
    # that it cannot infer input dtypes, which is expected for untyped vars.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        block = gluon.SymbolBlock.imports(os.path.join(model_dir, EXPORT_SYMBOL), names,
                                          os.path.join(model_dir, EXPORT_PARAMS), ctx=ctx or mx.cpu())
    return block, sidecar


def exported_input_arrays(sidecar, batch):
    """Order a dict of arrays by the sidecar's inputs, checking names, shapes (except batch), dtype."""
    out = []
    for spec in sidecar["inputs"]:
        name = spec["name"]
        if name not in batch:
            raise EmotionMXError(f"missing input '{name}' (model expects {[i['name'] for i in sidecar['inputs']]})")
        arr = np.asarray(batch[name])
        if list(arr.shape[1:]) != list(spec["shape"][1:]):
            raise EmotionMXError(f"input '{name}' has shape {list(arr.shape)}, expected [B] + {spec['shape'][1:]}")
        arr = arr.astype(np.float32, copy=False)
        if not np.isfinite(arr).all():
            raise EmotionMXError(f"input '{name}' holds NaN or inf; inputs must be finite")
        out.append(arr)
    return out
