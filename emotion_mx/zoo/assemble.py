"""A zoo model's full graph, assembled once and cached as an ordinary exported model.

``ensure_exported(name)`` returns ``CACHE/zoo/<name>-<key>/``: ``model-symbol.json``,
``model-0000.params``, ``model.json`` (the sidecar of :mod:`emotion_mx.artifacts`, with a
``zoo`` record) and MiniLM's ``tokenizer.json`` for text models, so ``predict``, ``serve``, the
live page, ONNX, INT8 and the C++ wrapper run the same files as for a trained export.  The key
hashes the shipped heads and cards, so a new package version assembles anew.  The folder is
written under a temporary name and renamed when complete: an interrupted first call leaves
nothing half-written behind, and two processes racing both end with one complete folder.

Assembly: (1) build ``zoo_experts`` for the model's modalities (random init), (2) load each
encoder's checkpoint from its weight package, (3) load the trained heads shipped in
``emotion_mx/zoo/heads/``, (4) export with the data settings every zoo model uses.
"""
import hashlib
import os
import shutil
import tempfile
import zipfile

import numpy as np

from .. import __version__
from ..artifacts import EXPORT_SYMBOL, ModelSpec, export_block, read_sidecar
from ..config import AlignConfig, AudioConfig, DatasetConfig, FaceConfig, to_dict
from ..contract import input_names
from ..errors import EmotionMXError
from ..pretrained.sources import cache_dir, checkpoint_path, package_file
from ..store import DataSettings
from .cards import GRAPH_REVISION, MODALITY_OF_PART, ZOO_LABELS, get_card, head_path, read_measured

__all__ = ["ensure_exported", "zoo_spec", "build_zoo_block", "cache_key"]

WHISPER_FPS = 100          # Whisper's log-mel: hop 160 at 16 kHz
TOKENIZER = "tokenizer.json"


def _parts(card):
    """``{modality: (part name, measured card)}`` of a zoo model, checked."""
    out = {}
    for part in card.parts:
        measured = read_measured(part)
        if measured is None:
            raise EmotionMXError(f"zoo model {part!r} has no trained head in this installation "
                                 f"(emotion_mx/zoo/cards/{part}.json missing); run `emotion-mx zoo build {part}`")
        if "hidden_units" in measured["head"] and not os.path.isfile(head_path(part)):
            raise EmotionMXError(f"{head_path(part)} missing; reinstall emotion_mx or run `emotion-mx zoo build {part}`")
        out[MODALITY_OF_PART[part]] = (part, measured)
    return out


def zoo_spec(name):
    """The :class:`ModelSpec` of zoo model ``name`` (no weights needed)."""
    card = get_card(name)
    parts = _parts(card)
    mods = card.modalities
    frames = int(round(card.max_audio_seconds * WHISPER_FPS))
    kwargs = {f"{m}_encoder": parts[m][1]["encoder"] for m in mods}
    kwargs.update({f"{m}_hidden": int(parts[m][1]["head"]["hidden_units"]) for m in mods
                   if "hidden_units" in parts[m][1]["head"]})
    if "video" in mods:
        kwargs.update(num_frames=card.num_frames, video_head="video_hidden" in kwargs)
    trim_db = parts["audio"][1].get("front_end", {}).get("trim_db") if "audio" in parts else None
    prep = DatasetConfig(audio=AudioConfig(whisper=True, prosody=False, max_seconds=card.max_audio_seconds,
                                           trim_db=trim_db),
                         face=FaceConfig(size=64, grayscale=True, num_frames=card.num_frames),
                         align=AlignConfig(enabled=False))
    data = DataSettings(modalities=mods, audio_feature="whisper_logmel",
                        max_audio_frames=frames if "audio" in mods else None,
                        max_tokens=card.max_tokens if "text" in mods else None,
                        num_frames=card.num_frames if "video" in mods else None,
                        frame_size=64 if "video" in mods else None, frame_channels=1 if "video" in mods else None,
                        text_ids="wordpiece" if "text" in mods else "vocab",
                        frame_norm="symmetric" if "video" in mods else "fold",
                        preprocessing=to_dict(prep))
    shapes = {"audio": [frames, 80], "audio_mask": [frames], "text": [card.max_tokens],
              "text_mask": [card.max_tokens], "video": [card.num_frames, 1, 64, 64], "video_mask": [card.num_frames]}
    return ModelSpec(name="zoo_experts", kwargs=kwargs, modalities=mods, num_classes=len(ZOO_LABELS),
                     labels=ZOO_LABELS, inputs={n: shapes[n] for n in input_names(mods)}, data=data)


def _load_head(head, path):
    """Copy the shipped arrays into a :class:`LayerWeightedHead` (names after its prefix)."""
    import mxnet as mx
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise EmotionMXError(f"{path}: not a readable head file ({e}); reinstall emotion_mx or run "
                             "`emotion-mx zoo build NAME`") from None
    params = {k[len(head.prefix):]: p for k, p in head.collect_params().items()}
    if set(arrays) != set(params):
        raise EmotionMXError(f"{path}: holds {sorted(arrays)}, the head expects {sorted(params)}; "
                             "the file is from another version: reinstall emotion_mx")
    for k, p in params.items():
        if tuple(arrays[k].shape) != tuple(p.shape):
            raise EmotionMXError(f"{path}: '{k}' has shape {arrays[k].shape}, the head expects {p.shape}")
        p.set_data(mx.nd.array(arrays[k]))


def build_zoo_block(name, spec=None):
    """The initialised ``zoo_experts`` block of ``name`` with the encoders' checkpoints and the heads."""
    import mxnet as mx

    from ..artifacts import build_model
    from ..pretrained.loader import _set_weights
    spec = spec or zoo_spec(name)
    parts = _parts(get_card(name))
    net = build_model(spec)
    net.initialize(mx.init.Xavier(), ctx=mx.cpu())
    for m, expert in zip(spec.modalities, net.experts):
        encoder = spec.kwargs[f"{m}_encoder"]
        _set_weights(expert.encoder, encoder, checkpoint_path(encoder))
        if expert.head is not None:
            _load_head(expert.head, head_path(parts[m][0]))
    return net


def cache_key(name):
    """Hash of what the assembled files depend on: the package version, the graph's revision and
    the shipped cards and heads of its parts."""
    h = hashlib.sha256(f"{name}/{__version__}/{GRAPH_REVISION}".encode())
    for part in get_card(name).parts:
        for path in (os.path.join(os.path.dirname(head_path(part)), "..", "cards", f"{part}.json"), head_path(part)):
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()[:12]


def _complete(folder):
    try:
        read_sidecar(folder)
    except EmotionMXError:
        return False
    return os.path.isfile(os.path.join(folder, EXPORT_SYMBOL))


def ensure_exported(name, cache=None, log=None, onnx=True):
    """The cached export folder of zoo model ``name``, assembled on the first call; with ``onnx``
    (and the ``[onnx]`` extra installed) also ``model.onnx``, checked against MXNet, and
    ``runtime.json``: which runtime is faster here at batch 1, what ``runtime="auto"`` follows."""
    get_card(name)
    root = os.path.join(cache or cache_dir(), "zoo")
    folder = os.path.join(root, f"{name}-{cache_key(name)}")
    if _complete(folder):
        return folder
    os.makedirs(root, exist_ok=True)
    if log:
        log(f"assembling zoo model {name!r} into {folder} (once)")
    spec = zoo_spec(name)
    net = build_zoo_block(name, spec)
    tmp = tempfile.mkdtemp(prefix=f".{name}-", dir=root)
    try:
        card = {p: read_measured(p) for p in get_card(name).parts}
        zoo = {"name": name, "version": card[get_card(name).parts[0]].get("version"), "key": cache_key(name),
               "encoders": {m: spec.kwargs[f"{m}_encoder"] for m in spec.modalities}}
        if "text" in spec.modalities:
            shutil.copyfile(package_file("minilm_l6", TOKENIZER), os.path.join(tmp, TOKENIZER))
        extra = {"zoo": zoo, "source_run": f"zoo:{name}"}
        if "text" in spec.modalities:
            extra["vocab"] = TOKENIZER         # MiniLM's WordPiece, copied above
        export_block(net, spec, tmp, extra=extra)
        if onnx:
            _add_onnx(tmp, log)
        if os.path.isdir(folder) and not _complete(folder):    # damaged: set aside, then replaced
            stale = tempfile.mkdtemp(prefix=f".{name}-stale-", dir=root)
            os.rename(folder, os.path.join(stale, "old"))
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(tmp, folder)
        except OSError:                      # another process finished first
            if not _complete(folder):
                raise
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _add_onnx(folder, log):
    """ONNX next to the symbol, when the optional ONNX stack is installed; a failure is said, not fatal."""
    import importlib.util
    if not all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime")):
        return
    from ..deploy.onnx_export import export_onnx
    from ..deploy.ort_runtime import measure_runtimes
    try:
        export_onnx(folder)
        measure_runtimes(folder, batch_sizes=(1,), rounds=3, repeats=5, measured_at="zoo assembly")
    except EmotionMXError as e:
        for f in ("model.onnx", "runtime.json"):
            if os.path.isfile(os.path.join(folder, f)):
                os.unlink(os.path.join(folder, f))
        if log:
            log(f"no ONNX for this zoo model ({e}); it runs on MXNet")

