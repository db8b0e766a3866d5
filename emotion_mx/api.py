"""The Python API: one import, one call.

    from emotion_mx import EmotionRecognizer
    rec = EmotionRecognizer.load("export/")            # fp32 or INT8 export
    r = rec.predict(audio="clip.wav", text="I am so angry")
    r.label, r.probabilities, r.modalities, r.timings

Inputs, any subset of the model's modalities:

* ``audio``: a file path (wav/flac/ogg through soundfile; mp3, m4a and video files through
  ffmpeg) or ``(waveform, sample_rate)`` with a ``(samples,)`` or ``(samples, channels)`` array;
* ``text``: a string;
* ``image``: a file path or an ``(H, W)`` / ``(H, W, 3)`` / ``(H, W, 4)`` array in **RGB** order
  (as PIL, imageio and matplotlib give it; from OpenCV pass ``cv2.cvtColor(img,
  cv2.COLOR_BGR2RGB)``), uint8 (0..255) or float in [0, 1] (other values are refused);
* ``video``: a file path (frames are sampled over ``[start, end]``);
* ``start``/``end``: seconds, a segment of the audio (file or array: the waveform is cut there;
  ``end`` past the end is clipped to it, a ``start`` at or past it is an error) and of the video
  file; finite, ``0 <= start < end``, and only together with audio or video; ``lang``:
  transcript language.

Files go through exactly the dataset builder's per-item preprocessing
(:func:`emotion_mx.build.extract_item`, via :class:`~emotion_mx.inference.predict.Predictor`);
in-memory audio and images go through the same steps on arrays
(:func:`emotion_mx.features.audio.prepare_wave` — the decoded-samples half of ``load_audio`` —
then the feature functions streaming uses, :mod:`emotion_mx.inference.window`).  Settings,
normalisation and vocabulary come from the export's sidecar through
:class:`~emotion_mx.inference.model.ExportedModel`; nothing here reads ``model.json`` itself.

Errors: :class:`InputError` (a ``ValueError`` and an
:class:`~emotion_mx.errors.EmotionMXError`) names the argument at fault; a model folder that
cannot be used raises :class:`~emotion_mx.errors.EmotionMXError`.
"""
import dataclasses
import os
import time
from typing import Dict, List, Optional, Tuple

import numpy as np

from .errors import BadItem, EmotionMXError

__all__ = ["EmotionRecognizer", "EmotionResult", "InputError", "INPUT_ARGUMENTS"]

INPUT_ARGUMENTS = ("audio", "text", "image", "video")
ZOO_PREFIX = "zoo:"                     # load("zoo:speech"): a ready model of emotion_mx.zoo
MAX_SAMPLE_RATE = 384000                # in-memory audio: sample rates above this are not audio
# argument → model modality it feeds (image and video both feed the face input)
ARGUMENT_MODALITY = {"audio": "audio", "text": "text", "image": "video", "video": "video"}


class InputError(EmotionMXError, ValueError):
    """An input the model cannot use; ``argument`` names it (``audio``, ``text``, ``image``,
    ``video``, ``start``/``end`` or ``inputs``)."""

    def __init__(self, argument, reason):
        self.argument, self.reason = argument, str(reason)
        super().__init__(f"{argument}: {reason}")


@dataclasses.dataclass(frozen=True)
class EmotionResult:
    label: str                          # arg-max label
    probabilities: Dict[str, float]     # label → probability, in the model's label order
    modalities: Tuple[str, ...]         # modalities that reached the model
    timings: Dict[str, float]           # milliseconds per stage: audio/text/video, model, total
    model: str = ""                     # the model folder that answered

    def to_json(self):
        return {"label": self.label,
                "probabilities": {k: round(float(v), 6) for k, v in self.probabilities.items()},
                "modalities": list(self.modalities),
                "timings_ms": {k: round(float(v), 3) for k, v in self.timings.items()},
                "model": self.model}


def _ms(t0):
    return (time.perf_counter() - t0) * 1e3


class EmotionRecognizer:
    """An exported model plus its preprocessing; thread-compatible, not thread-safe (one
    recognizer per thread, or serialise calls as ``emotion_mx.serve`` does)."""

    def __init__(self, model_dir, batch_size=8, ctx=None, runtime="auto"):
        from .inference.predict import Predictor
        model_dir = resolve_model(model_dir)
        if not os.path.isdir(model_dir):
            raise EmotionMXError(f"model folder not found: {model_dir} (an export of tools/export.py "
                                 "or tools/quantize.py)")
        self.model_dir = model_dir
        self.batch_size = int(batch_size)
        self._predictor = Predictor(model_dir, batch_size=1, ctx=ctx, runtime=runtime)
        self._model = self._predictor.model
        # "mxnet" or "onnxruntime": auto = the faster one measured for this folder (runtime.json)
        self.runtime, self.runtime_message = self._predictor.runtime, self._predictor.runtime_message
        self.labels = list(self._model.labels)
        self.modalities = tuple(self._model.modalities)
        self.precision = self._model.precision
        self.sidecar = self._model.sidecar

    @classmethod
    def load(cls, model_dir, batch_size=8, ctx=None, runtime="auto"):
        """Load an exported fp32 or INT8 model folder once; ``batch_size``: rows per forward pass
        of :meth:`predict_batch` (every pass has this shape, so one cached graph serves all);
        ``runtime``: ``"mxnet"``, ``"onnxruntime"`` (needs the folder's ``model.onnx``) or
        ``"auto"``, the faster of the two as measured when ``model.onnx`` was written.
        ``"zoo:NAME"`` loads the ready model NAME of the model zoo (:meth:`pretrained`)."""
        return cls(model_dir, batch_size=batch_size, ctx=ctx, runtime=runtime)

    @classmethod
    def pretrained(cls, name="multimodal", batch_size=8, ctx=None, runtime="auto"):
        """A ready, trained model of the zoo (``emotion-mx zoo list``): ``speech``, ``text``,
        ``face`` or ``multimodal``.  Its full graph is assembled once from the installed weight
        packages and the heads shipped in the package, then cached (``$EMOTION_MX_CACHE``)."""
        return cls.load(f"{ZOO_PREFIX}{name}", batch_size=batch_size, ctx=ctx, runtime=runtime)

    @property
    def input_arguments(self):
        """The ``predict`` arguments this model accepts."""
        return tuple(a for a in INPUT_ARGUMENTS if ARGUMENT_MODALITY[a] in self.modalities)

    # -- public calls --------------------------------------------------------------------
    def predict(self, audio=None, text=None, image=None, video=None, start=None, end=None, lang=None,
                strict=True):
        """One prediction (see the module docstring for the inputs).  ``strict=False`` ignores
        inputs of modalities the model lacks instead of raising :class:`InputError`."""
        kw = dict(audio=audio, text=text, image=image, video=video, start=start, end=end, lang=lang)
        return self.run(self.prepare([{k: v for k, v in kw.items() if v is not None}], strict=strict),
                        batch_size=1)[0]

    def predict_batch(self, inputs, strict=True):
        """Predictions for a list of dicts with :meth:`predict`'s keyword arguments, run through
        the model ``batch_size`` rows at a time.  A bad input raises :class:`InputError` whose
        ``argument`` is ``inputs[i].<name>``."""
        return self.run(self.prepare(inputs, strict=strict, batch=True))

    def prepare(self, inputs, strict=True, batch=False):
        """Preprocess a list of input dicts: ``[(features, timings)]`` for :meth:`run` (bad input
        raises :class:`InputError` here, before any model call)."""
        if isinstance(inputs, dict) or not hasattr(inputs, "__iter__"):
            raise InputError("inputs", "expected a list of dicts such as [{'audio': 'a.wav', 'text': '...'}]")
        inputs = list(inputs)
        if not inputs:
            raise InputError("inputs", "empty list")
        prepared = []
        for i, kw in enumerate(inputs):
            if not isinstance(kw, dict):
                raise InputError(f"inputs[{i}]", f"expected a dict of inputs, got {type(kw).__name__}")
            unknown = sorted(set(kw) - set(INPUT_ARGUMENTS) - {"start", "end", "lang"})
            if unknown:
                raise InputError(f"inputs[{i}].{unknown[0]}" if batch else unknown[0], "unknown argument; use "
                                 + ", ".join(INPUT_ARGUMENTS + ("start", "end", "lang")))
            t0 = time.perf_counter()
            try:
                feats, timings = self.features(strict=strict, **kw)
            except InputError as e:
                if not batch:
                    raise
                raise InputError(f"inputs[{i}].{e.argument}", e.reason) from None
            timings["_t0"] = t0
            prepared.append((feats, timings))
        return prepared

    def run(self, prepared, batch_size=None):
        """The model on :meth:`prepare`'s output, ``batch_size`` rows per forward pass (default
        the recognizer's); ``model`` timing is the batch's forward time shared equally."""
        t1 = time.perf_counter()
        feats = [f for f, _ in prepared]
        probs = self._predictor.predict_features(feats, batch_size=batch_size or self.batch_size)
        model_ms = _ms(t1) / len(prepared)
        t0 = min(tm["_t0"] for _, tm in prepared)
        out = []
        for p, (f, tm) in zip(probs, prepared):
            tm = {k: v for k, v in tm.items() if k != "_t0"}
            tm["model"] = model_ms
            tm["total"] = _ms(t0)
            out.append(self._result(p, f, tm))
        return out

    # -- preprocessing -------------------------------------------------------------------
    def features(self, audio=None, text=None, image=None, video=None, start=None, end=None, lang=None,
                 strict=True):
        """``(feature dict, timings ms)`` of one input set: the per-item features the model's
        input assembly takes (raises :class:`InputError`)."""
        given = {"audio": audio, "text": text, "image": image, "video": video}
        given = {k: v for k, v in given.items() if v is not None}
        if not given:
            raise InputError("inputs", "no input given: pass at least one of "
                             + ", ".join(self.input_arguments) + f" (the model takes {', '.join(self.modalities)})")
        if "image" in given and "video" in given:
            raise InputError("image", "give image or video, not both (both feed the face input)")
        for name in list(given):
            if ARGUMENT_MODALITY[name] not in self.modalities:
                if strict:
                    raise InputError(name, f"the model has no {ARGUMENT_MODALITY[name]} input "
                                     f"(it takes {', '.join(self.modalities)})")
                del given[name]
        if not given:
            raise InputError("inputs", f"none of the inputs feeds the model (it takes {', '.join(self.modalities)})")
        _check_segment(start, end, timed=[n for n, v in (("audio", audio), ("video", video)) if v is not None])
        if lang is not None and not isinstance(lang, str):
            raise InputError("lang", f"expected a language code such as 'en', got {type(lang).__name__}")
        if "video" in given and not _is_path(given["video"]):
            raise InputError("video", f"expected a file path, got {type(given['video']).__name__}")
        cfg = self._model.feature_config
        feats, timings = {}, {}
        for name, value in given.items():
            t0 = time.perf_counter()
            try:
                if name == "text":
                    feats.update(self._text(value, lang))
                elif name == "audio" and not _is_path(value):
                    feats.update(self._wave(value, cfg, start, end))
                elif name == "image" and not _is_path(value):
                    feats.update(self._image_array(value, cfg))
                else:
                    feats.update(self._file(name, value, start, end, lang))
            except BadItem as e:
                raise InputError(name, e.reason) from None
            timings[ARGUMENT_MODALITY[name]] = _ms(t0)
        return feats, timings

    def _file(self, name, path, start, end, lang):
        """A media file through the dataset builder's extract_item (the CLI's code path)."""
        from .manifest import Utterance
        path = os.path.abspath(os.fspath(path))
        if "\0" in path:
            raise InputError(name, "the file path contains a NUL character")
        if not os.path.isfile(path):   # a name with a newline must not break the one-line message
            raise InputError(name, f"file not found: {path if path.isprintable() else repr(path)}")
        item = Utterance(id=name, label="?", group="?", start=start, end=end, lang=lang,
                         **{name: os.path.relpath(path, os.sep)})
        feats = self._predictor.features(item, os.sep)
        return {k: v for k, v in feats.items() if k != "frame_times"}

    def _text(self, text, lang):
        from .features.text import tokenize
        if not isinstance(text, str):
            raise InputError("text", f"expected a string, got {type(text).__name__}")
        tokens = tokenize(text, lower=self._model.config.text.lower)
        if not tokens:
            raise InputError("text", "no words in the text")
        return {"tokens": tokens}

    def _wave(self, value, cfg, start=None, end=None):
        from .features.audio import prepare_wave
        from .inference.window import audio_features_from_wave
        if not (isinstance(value, (tuple, list)) and len(value) == 2):
            raise InputError("audio", "expected a file path or (waveform, sample_rate)")
        wave, rate = value
        if not isinstance(rate, (int, np.integer)) or isinstance(rate, bool):
            raise InputError("audio", f"sample rate must be an integer (Hz), got {rate!r}")
        if not 0 < rate <= MAX_SAMPLE_RATE:
            raise InputError("audio", f"sample rate must be between 1 and {MAX_SAMPLE_RATE} Hz, got {rate}")
        try:
            wave = np.asarray(wave)
        except (ValueError, TypeError) as e:          # ragged nested lists
            raise InputError("audio", f"waveform must be an array of samples ({str(e).splitlines()[0]})") from None
        if wave.dtype.kind not in "fiu":
            raise InputError("audio", f"waveform must be numeric, got dtype {wave.dtype}")
        if wave.ndim not in (1, 2):
            raise InputError("audio", f"expected a (samples,) or (samples, channels) waveform, got shape {wave.shape}")
        if wave.dtype.kind in "iu":        # PCM integers → [-1, 1] as soundfile decodes them
            wave = wave.astype(np.float32) / float(np.iinfo(wave.dtype).max)
        if start is not None or end is not None:       # the segment, cut as load_audio cuts a file
            seconds = wave.shape[0] / float(rate)
            if start is not None and start >= seconds:
                raise InputError("start", f"{start:g} s is at or beyond the end of the audio ({seconds:.3f} s)")
            first = int(round((start or 0.0) * rate))
            last = wave.shape[0] if end is None else min(wave.shape[0], int(round(end * rate)))
            wave = wave[first:last]
        a = cfg.audio
        wave = prepare_wave(wave, int(rate), sample_rate=a.sample_rate, max_seconds=a.max_seconds,
                            source="audio array", trim_db=a.trim_db)
        return audio_features_from_wave(wave, a)

    def _image_array(self, value, cfg):
        import cv2
        from .inference.window import faces_from_images
        img = np.asarray(value)
        if img.ndim == 3 and img.shape[2] == 4:
            img = img[..., :3]                                           # drop alpha
        if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)) or min(img.shape[:2]) < 1:
            raise InputError("image", f"expected an (H, W) or (H, W, 3) RGB array, got shape {img.shape}")
        if img.dtype.kind == "f":
            if not np.all(np.isfinite(img)):
                raise InputError("image", "contains NaN/inf values")
            lo, hi = float(img.min()), float(img.max())
            if lo < 0.0 or hi > 1.0:
                raise InputError("image", f"float pixels must be in [0, 1], got values in [{lo:g}, {hi:g}]; "
                                 "divide 0-255 values by 255 (or pass a uint8 array)")
            img = np.clip(img * 255.0 + 0.5, 0, 255)
        elif img.dtype.kind in "iu":
            lo, hi = int(img.min()), int(img.max())
            if lo < 0 or hi > 255:
                raise InputError("image", f"integer pixels must be in 0..255, got values in [{lo}, {hi}]; "
                                 "pass a uint8 array (or floats in [0, 1])")
        else:
            raise InputError("image", f"pixels must be numeric, got dtype {img.dtype}")
        img = np.ascontiguousarray(img, dtype=np.uint8)
        bgr = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR if img.ndim == 2 else cv2.COLOR_RGB2BGR)   # (H, W, 3)
        return faces_from_images([bgr], cfg.face)

    def _result(self, probs, feats, timings):
        i = int(np.argmax(probs))
        return EmotionResult(label=self.labels[i],
                             probabilities={l: float(p) for l, p in zip(self.labels, probs)},
                             modalities=tuple(m for m in self.modalities if m in self._predictor.present(feats)),
                             timings=timings, model=self.model_dir)

    # -- service support -----------------------------------------------------------------
    def warm_up(self):
        """Run synthetic inputs of every modality through preprocessing and the model (batch 1
        and ``batch_size``), so the first real request pays no start-up cost."""
        rng = np.random.RandomState(0)
        kw = {}
        if "audio" in self.modalities:
            t = np.arange(16000) / 16000.0
            kw["audio"] = ((0.2 * np.sin(2 * np.pi * 180 * t) + 0.01 * rng.randn(t.size)).astype(np.float32), 16000)
        if "text" in self.modalities:
            kw["text"] = "hello there"
        if "video" in self.modalities:
            kw["image"] = rng.randint(0, 255, (96, 96, 3)).astype(np.uint8)
        self.predict(**kw)
        self.predict_batch([kw])

    def describe(self):
        """What a client needs to call the model: labels, modalities, inputs, precision."""
        sc = self.sidecar
        return {"labels": self.labels, "modalities": list(self.modalities),
                "arguments": list(self.input_arguments), "precision": self.precision, "runtime": self.runtime,
                "inputs": sc["inputs"], "model": sc.get("model", {}).get("name"),
                "source_run": sc.get("source_run")}


def resolve_model(model):
    """A model folder, or ``zoo:NAME`` → the zoo model's cached export (assembled on first use)."""
    if isinstance(model, str) and model.startswith(ZOO_PREFIX):
        from .zoo import ensure_exported       # the zoo imports MXNet and the weight readers
        return ensure_exported(model[len(ZOO_PREFIX):])
    return model


def _is_path(value):
    return isinstance(value, (str, os.PathLike))


def _check_segment(start, end, timed):
    """``start``/``end``: finite seconds, ``0 <= start < end``, and only with audio or video
    (``timed``: those given); the segment is honoured for files and arrays alike."""
    for name, value in (("start", start), ("end", end)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise InputError(name, f"expected seconds as a number, got {type(value).__name__}")
        if not np.isfinite(value):
            raise InputError(name, f"expected a finite number of seconds, got {value}")
        if value < 0:
            raise InputError(name, f"{value:g} s is negative; seconds count from the start of the audio/video")
    if end is not None and end <= (start or 0.0):
        raise InputError("end", f"{end:g} s is not after start ({start or 0.0:g} s); give end > start")
    if (start is not None or end is not None) and not timed:
        raise InputError("start" if start is not None else "end",
                         "a segment applies to audio or video; this input has neither (drop start/end)")
