"""An exported model (fp32 or INT8) with everything needed to feed it raw media.

:class:`ExportedModel` reads ``DIR/model.json`` (the sidecar) once and holds:

* the Gluon ``SymbolBlock`` (any batch size: rows are independent at inference);
* the data settings of the model inputs (:class:`~emotion_mx.store.DataSettings`, the sidecar's
  ``features``; :func:`emotion_mx.artifacts.read_sidecar` upgrades older layouts);
* the normalisation constants and the vocabulary the run was trained with;
* the :class:`~emotion_mx.config.DatasetConfig` of the feature store (raw-media preprocessing:
  ``sidecar["features"]["preprocessing"]``), checked against the input shapes so that a model
  is never fed features of another width.

Word alignment (DTW) is switched off in that config: the model inputs (DESIGN.md) do not use
word-level features, so aligning at prediction time would only cost time.
"""
import os

import numpy as np

from .. import artifacts as A
from ..config import AlignConfig, DatasetConfig, from_dict, replace
from ..data import assemble_inputs
from ..deploy.runtime import softmax
from ..errors import EmotionMXError
from ..features.audio import audio_feature_dims
from ..store import SELF_NORMALISED


def preprocessing_config(sidecar, model_dir="model"):
    """DatasetConfig that repeats the feature store's raw-media preprocessing for this model."""
    source = os.path.join(model_dir, A.SIDECAR) + ":features.preprocessing"
    cfg = from_dict(DatasetConfig, dict(sidecar["features"]["preprocessing"]), source=source)
    return replace(cfg, align=AlignConfig(enabled=False, voice=cfg.align.voice))


def _input_shapes(sidecar):
    return {i["name"]: list(i["shape"][1:]) for i in sidecar["inputs"]}


def check_compatible(cfg, settings, sidecar, model_dir):
    """One-line error if the preprocessing would produce inputs of another shape."""
    shapes = _input_shapes(sidecar)
    where = f"{model_dir}: preprocessing settings do not match the model inputs"
    if "audio" in shapes:
        a = cfg.audio
        dims = audio_feature_dims(a.n_mels, a.n_mfcc, a.deltas, a.prosody, whisper=a.whisper)
        parts = settings.audio_feature.split("+")
        missing = [p for p in parts if p not in dims]
        if missing:
            raise EmotionMXError(f"{where}: audio feature '{missing[0]}' is disabled in the audio settings")
        width = sum(dims[p] for p in parts)
        if width != shapes["audio"][1]:
            raise EmotionMXError(f"{where}: '{settings.audio_feature}' gives {width} values per frame, "
                                 f"the model takes {shapes['audio'][1]}")
        if not cfg.audio.enabled:
            raise EmotionMXError(f"{where}: audio is disabled in the preprocessing settings")
    if "video" in shapes:
        channels = 1 if cfg.face.grayscale else 3
        if (channels, cfg.face.size) != (settings.frame_channels, settings.frame_size):
            raise EmotionMXError(f"{where}: faces are {channels}x{cfg.face.size}x{cfg.face.size}, the model "
                                 f"takes {settings.frame_channels}x{settings.frame_size}x{settings.frame_size}")
    if "text" in shapes and not cfg.text.enabled:
        raise EmotionMXError(f"{where}: text is disabled in the preprocessing settings")


def needed_features(cfg, settings):
    """The preprocessing config restricted to what the model reads: the prosody track (F0
    tracking, the costly part of the audio features) and Whisper's own log-mel are not
    computed for a model whose audio input does not use them (e.g. a log-mel model of a store
    that also kept prosody and Whisper's log-mel)."""
    parts = settings.audio_feature.split("+")
    drop = {k: False for k, part in (("prosody", "prosody"), ("whisper", "whisper_logmel"))
            if getattr(cfg.audio, k) and part not in parts}
    return replace(cfg, audio=replace(cfg.audio, **drop)) if drop else cfg


def _required_norm(norm, settings, modalities, model_dir):
    keys = []
    if "audio" in modalities:
        keys += [k for k in settings.audio_feature.split("+") if k not in SELF_NORMALISED]
    if "video" in modalities and settings.frame_norm == "fold":
        keys.append("frames")
    missing = [k for k in keys if not norm or k not in norm]
    if missing:
        raise EmotionMXError(f"{model_dir}: model.json has no normalisation constants for '{missing[0]}'; "
                             "re-export the run (its norm.json is copied into the sidecar)")


class ExportedModel:
    """``ExportedModel(model_dir, runtime="auto")``: load once, then :meth:`probabilities` on
    assembled inputs.  ``runtime``: ``mxnet``, ``onnxruntime`` (the folder's ``model.onnx``) or
    ``auto`` (the faster one recorded in ``runtime.json`` at export/quantize time; MXNet when
    there is no record).  ``runtime_message`` says which runs and why; with ORT, MXNet is not
    imported at all."""

    def __init__(self, model_dir, ctx=None, runtime="auto"):
        from ..deploy.ort_runtime import OrtRunner, resolve_runtime
        self.model_dir = model_dir
        self.runtime, self.runtime_message = resolve_runtime(model_dir, runtime)
        self.ort = self.block = None
        if self.runtime == "onnxruntime":
            self.sidecar = A.read_sidecar(model_dir)
            self.ort = OrtRunner(os.path.join(model_dir, A.ONNX_MODEL))
            self.ctx = None
        else:
            import mxnet as mx
            self.block, self.sidecar = A.load_exported(model_dir, ctx=ctx)
            # one cached graph with static memory per input shape (batches are padded to one size)
            self.block.hybridize(static_alloc=True, static_shape=True)
            self.ctx = ctx or mx.cpu()
        sc = self.sidecar
        self.labels = list(sc["labels"])
        self.settings = A.exported_settings(sc)
        self.modalities = self.settings.modalities
        self.input_names = [i["name"] for i in sc["inputs"]]
        self.precision = sc.get("precision", "fp32")
        self.config = preprocessing_config(sc, model_dir)
        check_compatible(self.config, self.settings, sc, model_dir)
        self.feature_config = needed_features(self.config, self.settings)
        self.norm = sc.get("normalisation")
        _required_norm(self.norm, self.settings, self.modalities, model_dir)
        self.vocab = None
        if "text" in self.modalities:
            if not sc.get("vocab"):
                raise EmotionMXError(f"{model_dir}: the model takes text but model.json names no vocabulary file")
            from ..store import load_text_vocab   # gluonnlp/MXNet: lazy for ONNX Runtime serving
            self.vocab = load_text_vocab(os.path.join(model_dir, sc["vocab"]), self.settings)

    def assemble(self, feature_dicts):
        """Per-item feature dicts → model inputs (the same function store loading uses)."""
        return assemble_inputs(feature_dicts, self.modalities, self.settings, self.norm, self.vocab)

    def logits(self, inputs):
        """Logits ``(B, C)`` for a dict of input arrays (checked against the sidecar)."""
        arrays = A.exported_input_arrays(self.sidecar, inputs)
        if self.ort is not None:
            return self.ort(dict(zip(self.input_names, arrays)))
        import mxnet as mx
        out = self.block(*[mx.nd.array(x, ctx=self.ctx) for x in arrays])
        return out.asnumpy()

    def probabilities(self, inputs, batch_size=1):
        """Softmax probabilities ``(N, C)``, run in batches of ``batch_size`` (last one zero-padded,
        so one input shape serves every call)."""
        n = len(inputs[self.input_names[0]])
        out = []
        for start in range(0, n, batch_size):
            chunk = {}
            for name in self.input_names:
                x = inputs[name][start:start + batch_size]
                if len(x) < batch_size:
                    x = np.concatenate([x, np.zeros((batch_size - len(x),) + x.shape[1:], x.dtype)])
                chunk[name] = x
            out.append(softmax(self.logits(chunk))[: min(batch_size, n - start)])
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32)
