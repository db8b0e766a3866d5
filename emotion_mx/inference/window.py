"""Features of in-memory media (a stream window): the adapter between streaming and the
dataset-building preprocessing.

Why an adapter: :func:`emotion_mx.build.extract_item` takes an utterance with *file paths* and
decodes them itself; a stream window holds already decoded samples and frames (from a pipe, a
camera or a microphone).  Re-decoding the file per window would cost a process start per window
and is impossible for live devices.  So this module applies the same steps to arrays, with the
same settings object (``DatasetConfig``) and the same feature functions:

* audio: ``max_seconds`` cut, the non-finite and silence checks of ``load_audio`` (silent →
  BadItem, here: the audio of that window is missing), ``audio_features`` with the config's
  parameters;
* faces: the per-frame crop of ``extract_faces`` (``features.face.crop_face``) on the window's
  sampled frames;
* text: ``tokenize`` with the config's ``lower``.

Word alignment (DTW) is skipped: the model inputs do not use word-level features (see
:mod:`.model`).  ``tests/test_stream.py`` checks that a window's features and prediction equal
those of ``Predictor`` (``extract_item``) on the same file segment.
"""
import time

import cv2
import numpy as np

from ..errors import BadItem
from ..features import audio as fa
from ..features import face as ff


def audio_features_from_wave(wave, audio_cfg, prosody=None):
    """``{'logmel', 'mfcc'[, 'prosody']}`` of a mono float32 wave at ``audio_cfg.sample_rate``.

    ``prosody=False`` skips the prosody track (F0 tracking is the costly part) when the model
    does not use it; the other features do not depend on it."""
    a = audio_cfg
    wave = np.asarray(wave, np.float32)
    if a.max_seconds is not None:
        wave = wave[:int(round(a.max_seconds * a.sample_rate))]
    if wave.size == 0:
        raise BadItem("no audio samples")
    if not np.all(np.isfinite(wave)):
        raise BadItem("audio contains NaN/inf samples")
    peak = float(np.max(np.abs(wave)))
    if peak < fa.SILENCE_PEAK:
        raise BadItem(f"audio is silent (peak {peak:.1e} < {fa.SILENCE_PEAK:.0e})")
    return fa.audio_features(wave, sample_rate=a.sample_rate, n_mels=a.n_mels, win_ms=a.win_ms,
                             hop_ms=a.hop_ms, n_mfcc=a.n_mfcc, deltas=a.deltas,
                             prosody=a.prosody if prosody is None else (a.prosody and prosody),
                             fmin=a.fmin, fmax=a.fmax)


def crop_face(image, face_cfg):
    """``((C, S, S) uint8, face_found)`` of one BGR frame: the per-frame step of extract_faces."""
    f = face_cfg
    return ff.crop_face(image, f.size, f.grayscale, f.margin, f.detect, f.min_face)


def _downscale(image, side):
    """``image`` with its longest side at most ``side`` px (0: unchanged)."""
    h, w = image.shape[:2]
    if not side or max(h, w) <= side:
        return image
    scale = side / float(max(h, w))
    return cv2.resize(image, (max(1, int(round(w * scale))), max(1, int(round(h * scale)))),
                      interpolation=cv2.INTER_AREA)


def _face_square(image, face_cfg):
    """``(x0, y0, side)`` of the face square ``crop_face`` would cut, or None (no face).
    Uses the detector helpers of :mod:`emotion_mx.features.face` so the square is the same."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    box = ff._detect_largest_face(gray, face_cfg.min_face)
    if box is None:
        return None
    x, y, w, h = box
    return ff._square(gray.shape, x + w / 2.0, y + h / 2.0, max(w, h) * (1 + 2 * face_cfg.margin))


class FaceCache:
    """Face crops by frame timestamp.  Overlapping windows sample many of the same frames
    (window 2 s, hop 0.5 s, 8 frames: 6 of 8 are shared with the previous window), and face
    detection is the most expensive step, so each frame is cropped once.

    Quality settings (:mod:`.quality`): ``frame_side`` downscales frames before detection and
    cropping; ``detect_every = k`` detects on every k-th new frame and reuses that face square
    (in the downscaled frame) for the frames in between."""

    def __init__(self, face_cfg):
        self.cfg, self._crops = face_cfg, {}
        self.hits = self.misses = 0
        self.frame_side, self.detect_every = 0, 1
        self._since_detect, self._square = None, None

    def set_quality(self, frame_side=0, detect_every=1):
        self.frame_side, self.detect_every = int(frame_side), max(1, int(detect_every))

    def __call__(self, t, image):
        key = (t, self.frame_side, self.detect_every)
        if key not in self._crops:
            self._crops[key] = self._crop(image)
            self.misses += 1
        else:
            self.hits += 1
        return self._crops[key]

    def _crop(self, image):
        if self.frame_side == 0 and self.detect_every == 1 or not self.cfg.detect:
            return crop_face(image, self.cfg)                # the dataset-building step, unchanged
        crop = ff.crop_face
        f = self.cfg
        image = _downscale(image, self.frame_side)
        if self._since_detect is None or self._since_detect + 1 >= self.detect_every:
            self._square, self._since_detect = _face_square(image, f), 0
        else:
            self._since_detect += 1
        if self._square is None:                            # no face: centre square (as crop_face)
            return crop(_centre(image), f.size, f.grayscale, f.margin, False, f.min_face)[0], 0
        x0, y0, side = self._square
        h, w = image.shape[:2]
        if x0 + side > w or y0 + side > h:                  # frame size changed: detect again
            self._since_detect = None
            return self._crop(image)
        crop_img, _ = crop(image[y0:y0 + side, x0:x0 + side], f.size, f.grayscale, f.margin, False, f.min_face)
        return crop_img, 1

    def forget_before(self, t):
        self._crops = {k: v for k, v in self._crops.items() if k[0] >= t}


def _centre(image):
    h, w = image.shape[:2]
    side = min(h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    return image[y0:y0 + side, x0:x0 + side]


def faces_from_images(images, face_cfg, times=None, cache=None):
    """``{'frames': (N, C, S, S) uint8, 'face_found': (N,) uint8}`` of BGR images (``times`` +
    ``cache``: reuse crops of frames seen in an earlier window)."""
    if cache is not None and times is not None:
        crops, found = zip(*(cache(t, img) for t, img in zip(times, images)))
    else:
        crops, found = zip(*(crop_face(img, face_cfg) for img in images))
    return {"frames": np.stack(crops), "face_found": np.asarray(found, np.uint8)}


def _timed(costs, name, fn, *args):
    t0 = time.perf_counter()
    try:
        return fn(*args)
    finally:
        if costs is not None:
            costs[name] = time.perf_counter() - t0


def window_features(window, text, cfg, modalities, face_cache=None, executor=None, audio_feature=None,
                    drop=None, costs=None):
    """``(features, missing)`` of a :class:`~.sync.Window` plus its subtitle text.

    ``features``: dict for :meth:`Predictor.predict_features`; ``missing``: {modality: reason}
    for each model modality the window cannot supply (it is then masked, never an error).
    ``executor`` (a thread pool): audio features are computed there while the faces are
    cropped here (both release the GIL in numpy/OpenCV); ``face_cache``: a :class:`FaceCache`;
    ``audio_feature`` (e.g. ``'logmel+prosody'``): the model's audio features (prosody is only
    computed if listed); ``drop``: {modality: reason} left out on purpose (load-adaptive
    quality; reported as missing); ``costs``: a dict that receives the seconds each modality's
    features took.
    """
    feats, missing = {}, dict(drop or {})
    modalities = [m for m in modalities if m not in missing]
    audio = None
    prosody = None if audio_feature is None else "prosody" in audio_feature.split("+")
    if "audio" in modalities:
        if window.wave is None:
            missing["audio"] = "no audio in the window"
        elif executor is not None:
            audio = executor.submit(_timed, costs, "audio", audio_features_from_wave, window.wave, cfg.audio, prosody)
        else:
            audio = _Done(_timed, costs, "audio", audio_features_from_wave, window.wave, cfg.audio, prosody)
    if "video" in modalities:
        if window.images:
            feats.update(_timed(costs, "video", faces_from_images, window.images, cfg.face, window.frame_times,
                                face_cache))
            if face_cache is not None:
                face_cache.forget_before(window.start - 1.0)
        else:
            missing["video"] = "no frame in the window"
    if "text" in modalities:
        from ..features.text import tokenize   # gluonnlp/MXNet: lazy for ONNX Runtime serving
        tokens = tokenize(text, lower=cfg.text.lower) if text else []
        if tokens:
            feats["tokens"] = tokens
        else:
            missing["text"] = "no subtitle in the window"
    if audio is not None:
        try:
            feats.update(audio.result())
        except BadItem as e:      # silent window: audio missing, not an error
            missing["audio"] = e.reason
    return feats, missing


class _Done:
    """A finished 'future' (same interface as concurrent.futures.Future.result)."""

    def __init__(self, fn, *args):
        try:
            self._value, self._error = fn(*args), None
        except BadItem as e:
            self._value, self._error = None, e

    def result(self):
        if self._error is not None:
            raise self._error
        return self._value
