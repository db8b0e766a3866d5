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
import librosa
import numpy as np

from ..errors import BadItem
from ..features import audio as fa
from ..features import face as ff


def audio_features_from_wave(wave, audio_cfg, cache=None, start=None, trim=False):
    """``{'logmel', 'mfcc'[, 'prosody']}`` of a mono float32 wave at ``audio_cfg.sample_rate``.

    The prosody track (F0 tracking, the costly part) is computed only if ``audio_cfg.prosody``:
    pass the model's ``feature_config.audio``, which has it off for models that do not read it.
    ``cache`` (a
    :class:`HopAudioCache`) + ``start`` (the wave's first sample in the stream, seconds): only
    the frames of samples not seen in an earlier window are computed.  ``trim`` (a stream window;
    files and arrays are trimmed when decoded): Whisper's log-mel is computed on the window without
    its leading and trailing silence (``audio_cfg.trim_db``), as the model's training clips were."""
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
    prosody = a.prosody
    # Whisper's log-mel floors at the window's own maximum: computed on the window, never cached
    spoken = wave
    if trim and a.trim_db is not None:
        cut = librosa.effects.trim(wave, top_db=float(a.trim_db))[0]
        spoken = cut if cut.size >= fa.MIN_AUDIO_SECONDS * a.sample_rate else wave
    extra = fa.whisper_features(spoken, a.sample_rate) if a.whisper else {}
    if cache is None or start is None:
        return dict(fa.audio_features(wave, sample_rate=a.sample_rate, n_mels=a.n_mels, win_ms=a.win_ms,
                                      hop_ms=a.hop_ms, n_mfcc=a.n_mfcc, deltas=a.deltas, prosody=prosody,
                                      fmin=a.fmin, fmax=a.fmax), **extra)
    n_fft, hop = fa._framing(a.sample_rate, a.win_ms, a.hop_ms)
    parts = cache.parts(wave, int(round(start * a.sample_rate)), a.sample_rate, n_fft, hop, prosody)
    return dict(fa.features_from_parts(parts, a.sample_rate, n_fft, n_mels=a.n_mels, n_mfcc=a.n_mfcc,
                                       deltas=a.deltas, fmin=a.fmin, fmax=a.fmax), **extra)


class HopAudioCache:
    """Per-frame audio parts (power spectrum, zero-crossing rate, F0) of a stream, by frame.

    Consecutive windows overlap (window 2 s, hop 0.5 s: 3/4 of the samples), and every part of a
    frame depends only on the samples under it (:func:`emotion_mx.features.audio.frame_parts`),
    so a window needs new frames only for its new samples, plus the few frames at its two edges
    whose analysis frame reaches past the window (those are padded, as in the full computation).
    The steps that look across frames (log-mel, MFCC deltas, voicing) run on the whole window;
    they are cheap.  Same values as :func:`~emotion_mx.features.audio.audio_features` on the
    window within float rounding (``tests/test_face_speed.py``).  A window whose start is not on
    the frame grid, or whose samples differ from the previous window's on their overlap, is
    computed whole (and restarts the cache)."""

    def __init__(self):
        self._frames, self._prev = {}, None       # {(name, stream frame): value}; (start, wave)
        self.computed = self.reused = 0

    def parts(self, wave, start, sample_rate, n_fft, hop, prosody):
        n = len(wave)
        lengths = fa.part_frame_lengths(sample_rate, n_fft)
        names = ["power"] + (["zcr", "f0"] if prosody else [])
        edge = -(-max(lengths[k] for k in names) // 2 // hop) + 1   # frames whose analysis frame may pass an edge
        frames = 1 + n // hop
        if start % hop or frames < 2 * edge + 4 or not self._continues(wave, start):
            self._frames = {}
        self._prev = (start, wave)
        if start % hop or frames < 2 * edge + 4:
            self.computed += frames
            return fa.frame_parts(wave, sample_rate, n_fft, hop, prosody)
        first = start // hop                           # the window's frame 0 in the stream
        s0 = (frames - 1 - 2 * edge) * hop             # a suffix on the frame grid: its last frames are ours
        left = fa.frame_parts(wave[:(2 * edge) * hop + max(lengths.values())], sample_rate, n_fft, hop, prosody)
        right = fa.frame_parts(wave[s0:], sample_rate, n_fft, hop, prosody)
        inner = range(edge, frames - edge)
        todo = [t for t in inner if ("power", first + t) not in self._frames]
        if todo:
            a, b = todo[0], todo[-1] + 1               # new frames are one run at the end
            for name in names:
                m = lengths[name]
                part = fa.frame_part(name, wave[a * hop - m // 2:(b - 1) * hop - m // 2 + m], sample_rate,
                                     n_fft, hop, center=False)
                for j, t in enumerate(range(a, b)):
                    self._frames[(name, first + t)] = part[..., j]
        self.computed += len(todo) + 2 * edge
        self.reused += len(inner) - len(todo)
        out = {}
        for name in names:
            middle = np.stack([self._frames[(name, first + t)] for t in inner], axis=-1)
            out[name] = np.concatenate([left[name][..., :edge], middle, right[name][..., -edge:]], axis=-1)
        self._frames = {k: v for k, v in self._frames.items() if k[1] >= first}   # older frames are done
        return out

    def _continues(self, wave, start):
        """The overlap with the previous window holds the same samples."""
        if self._prev is None:
            return False
        p_start, p_wave = self._prev
        off = start - p_start
        if off < 0 or off >= len(p_wave):
            return False
        k = min(len(p_wave) - off, len(wave))
        return np.array_equal(p_wave[off:off + k], wave[:k])


def crop_face(image, face_cfg):
    """``((C, S, S) uint8, face_found)`` of one BGR frame: the per-frame step of extract_faces."""
    f = face_cfg
    return ff.crop_face(image, f.size, f.grayscale, f.margin, f.detect, f.min_face, f.detector, f.detector_model)


def _downscale(image, side):
    """``image`` with its longest side at most ``side`` px (0: unchanged)."""
    h, w = image.shape[:2]
    if not side or max(h, w) <= side:
        return image
    scale = side / float(max(h, w))
    return cv2.resize(image, (max(1, int(round(w * scale))), max(1, int(round(h * scale)))),
                      interpolation=cv2.INTER_AREA)


def _face_square(image, face_cfg, gray=None, near=None):
    """``(x0, y0, side)`` of the face square ``crop_face`` would cut, or None (no face).
    Uses the detector helpers of :mod:`emotion_mx.features.face` so the square is the same.
    ``near``: a recent face square; the detector searches around it only."""
    f = face_cfg
    if near is not None:
        x0, y0, side = near
        w = side / (1 + 2 * f.margin)                     # the face box inside the square
        near = (x0 + (side - w) / 2, y0 + (side - w) / 2, w, w)
    box = ff.detect_largest_face(image, f.min_face, f.detector, f.detector_model, gray=gray, near=near)
    if box is None:
        return None
    x, y, w, h = box
    return ff._square(image.shape, x + w / 2.0, y + h / 2.0, max(w, h) * (1 + 2 * f.margin))


TRACK_SIDE = 48         # the face template is matched at this size (px)
TRACK_SEARCH = 0.25     # search this fraction of the square's side around it
TRACK_MIN_SCORE = 0.6   # below this normalised correlation the face is lost: detect again
FULL_EVERY = 4          # every 4th detection searches the whole frame, the others near the tracked face


class FaceTracker:
    """Between two detections, follow the face square with template matching (OpenCV
    ``matchTemplate``, normalised correlation, on a ``TRACK_SIDE`` px template of the face cut
    at the last detection): a small resize and one ``matchTemplate``, far cheaper than a Haar
    detection on a 640x360 frame.  The opencv-python-headless wheel has no KCF/CSRT (contrib) trackers,
    and MIL costs more than it saves here.

    Drift check: a match weaker than ``TRACK_MIN_SCORE`` (the face turned, left or was covered)
    returns None, and the caller detects again.  Moves below one template pixel are treated as
    no move, so on a still face the square (and the crop) stays exactly the detected one."""

    def __init__(self):
        self.square, self.template = None, None

    def reset(self, gray, square):
        self.square = square
        if square is None:
            self.template = None
            return
        x0, y0, side = square
        self.template = cv2_resize(gray[y0:y0 + side, x0:x0 + side], (TRACK_SIDE, TRACK_SIDE))

    def track(self, gray):
        """The square moved to where the face is in ``gray`` (H, W), or None (lost)."""
        x0, y0, side = self.square
        h, w = gray.shape
        if x0 + side > w or y0 + side > h:                  # frame size changed
            return None
        pad = int(round(side * TRACK_SEARCH))
        rx0, ry0 = max(0, x0 - pad), max(0, y0 - pad)
        rx1, ry1 = min(w, x0 + side + pad), min(h, y0 + side + pad)
        s = TRACK_SIDE / float(side)                        # template px per frame px
        region = cv2_resize(gray[ry0:ry1, rx0:rx1], (max(TRACK_SIDE, int(round((rx1 - rx0) * s))),
                                                     max(TRACK_SIDE, int(round((ry1 - ry0) * s)))))
        scores = cv2.matchTemplate(region, self.template, cv2.TM_CCOEFF_NORMED)
        _, best, _, (lx, ly) = cv2.minMaxLoc(scores)
        if not best >= TRACK_MIN_SCORE:                     # (NaN on a flat region: lost too)
            return None
        dx, dy = lx - (x0 - rx0) * s, ly - (y0 - ry0) * s   # template px
        if abs(dx) <= 1 and abs(dy) <= 1:
            return self.square
        self.square = ff._square(gray.shape, x0 + dx / s + side / 2.0, y0 + dy / s + side / 2.0, side)
        return self.square


def _same_place(a, b, tolerance=0.1):
    """Two squares ``(x0, y0, side)`` within ``tolerance`` of a side of each other.  A search
    near the face scans another pixel grid than a whole-frame one and finds the same face a
    few pixels off; keeping the tracked square then keeps a still face's crops exact."""
    return max(abs(a[0] - b[0]), abs(a[1] - b[1]), abs(a[2] - b[2])) <= tolerance * b[2]


def cv2_resize(image, size):
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


class FaceCache:
    """Face crops by frame timestamp.  Overlapping windows sample many of the same frames
    (window 2 s, hop 0.5 s, 8 frames: 6 of 8 are shared with the previous window), and face
    detection is the most expensive step, so each frame is cropped once.

    ``detect_every = k`` (stream option ``--detect-every``, raised by the quality levels of
    :mod:`.quality`): the detector runs on every k-th new frame, and a :class:`FaceTracker`
    follows the face square on the frames in between (detecting again as soon as it loses the
    face).  While a face is tracked, detections search near it (Haar: a small region, few scales), and every
    ``FULL_EVERY``-th detection, or one after the face is lost, searches the whole frame (a new,
    larger face is found within ``FULL_EVERY * k`` frames).  ``frame_side`` (quality levels)
    downscales frames before detection and cropping."""

    def __init__(self, face_cfg, detect_every=1):
        self.cfg, self._crops = face_cfg, {}
        self.hits = self.misses = 0
        self.base_every = max(1, int(detect_every))
        self.frame_side, self.detect_every = 0, self.base_every
        self.detections = self.tracked = 0
        self._since_detect, self._tracker, self._near_detections = None, FaceTracker(), 0

    def set_quality(self, frame_side=0, detect_every=1):
        if int(frame_side) != self.frame_side:              # squares are in the old frame's pixels
            self._since_detect, self._tracker = None, FaceTracker()
        self.frame_side, self.detect_every = int(frame_side), max(1, int(detect_every), self.base_every)

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
            self.detections += bool(self.cfg.detect)
            return crop_face(image, self.cfg)                # the dataset-building step, unchanged
        crop = ff.crop_face
        f = self.cfg
        image = _downscale(image, self.frame_side)
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)      # (H, W)
        square = None
        due = self._since_detect is None or self._since_detect + 1 >= self.detect_every
        if not due:
            self._since_detect += 1
            if self._tracker.square is not None:
                square = self._tracker.track(gray)
                due = square is None                        # lost: detect now
                self.tracked += not due
        if due:
            square = None
            if self._tracker.square is not None and self._near_detections + 1 < FULL_EVERY:
                square = _face_square(image, f, gray, near=self._tracker.square)
                self._near_detections += 1
                if square is not None and _same_place(square, self._tracker.square):
                    square = self._tracker.square           # the detector's jitter is no move
            if square is None:
                square, self._near_detections = _face_square(image, f, gray), 0
            self._since_detect = 0
            self._tracker.reset(gray, square)
            self.detections += 1
        if square is None:                                  # no face: centre square (as crop_face)
            return crop(_centre(image), f.size, f.grayscale, f.margin, False, f.min_face)[0], 0
        x0, y0, side = square
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


def window_features(window, text, cfg, modalities, face_cache=None, executor=None,
                    drop=None, costs=None, audio_cache=None):
    """``(features, missing)`` of a :class:`~.sync.Window` plus its subtitle text.

    ``features``: dict for :meth:`Predictor.predict_features`; ``missing``: {modality: reason}
    for each model modality the window cannot supply (it is then masked, never an error).
    ``executor`` (a thread pool): audio features are computed there while the faces are
    cropped here (both release the GIL in numpy/OpenCV); ``face_cache``: a :class:`FaceCache`;
    ``cfg``: the model's ``feature_config`` (what it reads: no prosody for a model without it);
    ``drop``: {modality: reason} left out on purpose (load-adaptive
    quality; reported as missing); ``costs``: a dict that receives the seconds each modality's
    features took; ``audio_cache``: a :class:`HopAudioCache` (audio frames computed once per hop).
    """
    feats, missing = {}, dict(drop or {})
    modalities = [m for m in modalities if m not in missing]
    audio = None
    if "audio" in modalities:
        if window.wave is None:
            missing["audio"] = "no audio in the window"
        elif executor is not None:
            audio = executor.submit(_timed, costs, "audio", audio_features_from_wave, window.wave, cfg.audio,
                                    audio_cache, window.start, True)
        else:
            audio = _Done(_timed, costs, "audio", audio_features_from_wave, window.wave, cfg.audio,
                          audio_cache, window.start, True)
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
