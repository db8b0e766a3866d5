"""Realtime streaming inference (``tools/stream.py``): sources → sync windows → model → JSON lines.

:func:`open_sources` builds the sources for the model's modalities; :class:`StreamRunner`
pushes their events through a :class:`~.sync.SyncBuffer`, turns each window into features
(:func:`~.window.window_features`), runs the :class:`~.predict.Predictor` and yields one result
dict per window (with an exponential moving average of the probabilities); :meth:`summary`
gives latency statistics, the realtime factor and the dropped-data counters.

With ``latency_budget`` the runner adapts its quality to the load (:mod:`.quality`); every
row says which level produced it.  :meth:`StreamRunner.start`/``push``/``finish`` drive the
same logic from events that arrive from elsewhere (the live page's WebSocket).
"""
import concurrent.futures
import dataclasses
import logging
import os
import statistics
import time

import numpy as np

from ..errors import EmotionMXError
from .sources import AudioPipe, CameraFrames, Microphone, Pacer, StreamClock, VideoFrames, live_merge, merge
from .quality import LEVELS, QualityController
from .subtitles import text_between
from .sync import SyncBuffer, Window
from .window import FaceCache, HopAudioCache, window_features

log = logging.getLogger(__name__)


def open_sources(modalities, sample_rate, video=None, camera=None, mic=False, audio=None,
                 chunk_seconds=0.1, max_seconds=None):
    """``(sources, live)`` for the model's modalities, from any subset of media: a video file
    (its frames, and its audio track unless ``audio``), an audio file alone, a camera, a
    microphone, or a camera with a microphone.  A modality the model lacks is not decoded; a
    modality the media lack is missing in every window (masked, as for a silent stretch)."""
    if video is not None and camera is not None:
        raise EmotionMXError("give --video FILE or --camera N, not both")
    if video is None and camera is None and audio is None and not mic:
        raise EmotionMXError("give a media source: --video FILE, --audio FILE, --camera N and/or --mic")
    if mic and audio:
        raise EmotionMXError("give --mic or --audio, not both")
    if mic and video is not None:
        raise EmotionMXError("--mic is live: it goes with --camera or alone (a file's audio comes from "
                             "--video or --audio)")
    if audio and "audio" not in modalities:
        raise EmotionMXError(f"--audio given but the model has no audio input (it takes {', '.join(modalities)})")
    if video is not None and not os.path.isfile(video):
        raise EmotionMXError(f"video file not found: {video}")
    if audio is not None and not os.path.isfile(audio):
        raise EmotionMXError(f"audio file not found: {audio}")
    sources = []
    if camera is not None or mic:
        if audio:
            raise EmotionMXError("a live camera cannot be synchronised with an audio file; use --mic")
        clock = StreamClock()
        if camera is not None and "video" in modalities:
            sources.append(CameraFrames(camera, max_seconds=max_seconds, clock=clock))
        if "audio" in modalities and mic:
            sources.append(Microphone(sample_rate, chunk_seconds, max_seconds=max_seconds))
        if not sources:
            given = "a camera" if camera is not None else "a microphone"
            raise EmotionMXError(f"the model takes {', '.join(modalities)}: {given} alone gives it nothing")
        return sources, True
    if video is not None and "video" in modalities:
        sources.append(VideoFrames(video))
    if "audio" in modalities and (audio or video):
        sources.append(AudioPipe(audio or video, sample_rate, chunk_seconds))
    if not sources:
        raise EmotionMXError(f"the model takes {', '.join(modalities)}: nothing to read from the "
                             f"{'video' if video else 'audio'} file")
    return sources, False


class EMA:
    """Exponential moving average of probability vectors: ``s = a * p + (1 - a) * s``."""

    def __init__(self, alpha):
        if not 0 < alpha <= 1:
            raise EmotionMXError(f"--ema must be in (0, 1], got {alpha}")
        self.alpha, self.value = float(alpha), None

    def update(self, p):
        self.value = p.copy() if self.value is None else self.alpha * p + (1 - self.alpha) * self.value
        return self.value


def stream_face_config(face_cfg, detector):
    """The model's face settings with the stream's ``--face-detector``: ``'auto'`` is YuNet when
    its model file is found (``face.detector_model``, ``$EMOTION_MX_YUNET_MODEL``), else the
    model's own detector; ``'haar'``/``'yunet'`` as named (YuNet without its file: one error)."""
    from ..features.face import yunet_model_path
    if detector == "auto":
        try:
            yunet_model_path(face_cfg.detector_model)
        except EmotionMXError:
            return face_cfg
        detector = "yunet"
    if detector == "yunet":
        yunet_model_path(face_cfg.detector_model)           # fail early, before the stream starts
    return dataclasses.replace(face_cfg, detector=detector)


def _probs(labels, p):
    return {l: round(float(x), 6) for l, x in zip(labels, p)}


class StreamRunner:
    """Windows of a stream → predictions. ``cues``: subtitle cues (text modality) or None."""

    def __init__(self, predictor, window=2.0, hop=0.5, tolerance=0.1, ema=0.5, cues=None, min_partial=None,
                 latency_budget=None, clock=time.perf_counter, detect_every=1, face_detector=None):
        self.predictor = predictor
        self.labels = predictor.labels
        self.modalities = predictor.modalities
        self.cues = cues or []
        if cues and "text" not in self.modalities:
            raise EmotionMXError(f"--transcript given but the model has no text input (it takes {', '.join(self.modalities)})")
        self.window, self.hop, self.tolerance, self.min_partial = window, hop, tolerance, min_partial
        self.ema = EMA(ema)
        face_cfg = predictor.config.face
        if face_detector not in (None, face_cfg.detector):
            face_cfg = stream_face_config(face_cfg, face_detector)
        self.face_detector = face_cfg.detector
        self.face_cache = FaceCache(face_cfg, detect_every)   # crops every window's frames
        self.audio_cache = HopAudioCache()
        self.executor = None    # a one-thread pool for audio features while run() is going
        self.latencies = []
        self.split_ms = []      # (features, model) per window
        self.missing = {m: 0 for m in self.modalities}
        self.buffer = None
        self.processing_seconds = 0.0
        self.stream_seconds = 0.0
        self.pacer = None
        self.latency_budget = latency_budget
        self.quality = QualityController(latency_budget)
        self.clock = clock          # latency and lag are measured with it (tests inject a fake one)
        self.costs = {}             # modality → exponential average of its feature seconds
        self.levels_used = {}
        self._t0 = None
        self._speed = None          # stream seconds per clock second (None: no lag measured)
        self.skipped_windows = 0    # windows not processed to catch up (push_all)

    def warmup(self, seconds=None):
        """One throw-away window of synthetic media through features and model, so that one-off
        costs (numba compilation in librosa, MXNet graph set-up) do not count as latency."""
        seconds = seconds or self.window
        sr = self.predictor.config.audio.sample_rate
        wave = np.random.RandomState(0).normal(0, 0.1, int(seconds * sr)).astype(np.float32)
        images = [np.full((64, 64, 3), 128, np.uint8)] * self.predictor.config.face.num_frames
        w = Window(-1, 0.0, seconds, False, wave, images, [], [], 1.0)
        feats, _ = window_features(w, "hello", self.predictor.model.feature_config, self.modalities)
        self.predictor.predict_features([feats])

    def _level_window(self, w, level):
        """The window as the quality level sees it: fewer face frames (evenly spread)."""
        n_all = len(w.images)
        n = max(1, int(round(level.frame_fraction * self.predictor.config.face.num_frames)))
        if n_all <= n:
            return w
        keep = [int((k + 0.5) * n_all / n) for k in range(n)]
        return dataclasses.replace(w, images=[w.images[i] for i in keep],
                                   frame_times=[w.frame_times[i] for i in keep],
                                   sample_times=[w.sample_times[i] for i in keep])

    def _drop(self, level):
        """{modality: reason} the level leaves out: the costliest of the stream's modalities."""
        if not level.drop_costliest:
            return {}
        carried = [m for m in ("audio", "video") if m in self.costs]
        if len(carried) < 2:
            return {}
        costliest = max(carried, key=lambda m: self.costs[m])
        return {costliest: f"dropped at quality level {self.quality.level} ({level.name})"}

    def process(self, w):
        """One :class:`~.sync.Window` → result dict (JSON-ready)."""
        t0 = self.clock()
        level_index, level = self.quality.level, self.quality.current
        self.face_cache.set_quality(level.frame_side, level.detect_every)
        w = self._level_window(w, level)
        text = text_between(self.cues, w.start, w.end) if self.cues else ""
        costs = {}
        feats, missing = window_features(w, text, self.predictor.model.feature_config, self.modalities,
                                         self.face_cache, self.executor, drop=self._drop(level), costs=costs,
                                         audio_cache=self.audio_cache)
        for m, c in costs.items():
            self.costs[m] = c if m not in self.costs else 0.7 * self.costs[m] + 0.3 * c
        t1 = self.clock()
        present = self.predictor.present(feats)
        row = {"window": w.index, "start": w.start, "end": w.end, "partial": w.partial,
               "modalities": list(present), "missing": missing, "frames": len(w.images)}
        if present:
            p = self.predictor.predict_features([feats])[0]
            s = self.ema.update(p)
            row.update(label=self.labels[int(np.argmax(p))], probabilities=_probs(self.labels, p))
        else:
            s = self.ema.value
            row.update(label=None, probabilities=None)
        row["smoothed"] = (None if s is None else
                           {"label": self.labels[int(np.argmax(s))], "probabilities": _probs(self.labels, s)})
        for m in missing:
            self.missing[m] += 1
        t2 = self.clock()
        latency = (t2 - t0) * 1e3
        self.latencies.append(latency)
        self.split_ms.append(((t1 - t0) * 1e3, (t2 - t1) * 1e3))
        row["latency_ms"] = round(latency, 3)
        lag = 0.0
        if self._speed is not None and self._t0 is not None:
            lag = max(0.0, (t2 - self._t0) * self._speed - w.end)
            row["lag_ms"] = round(lag * 1e3, 3)
        row["quality"] = {"level": level_index, "name": level.name}
        self.levels_used[level_index] = self.levels_used.get(level_index, 0) + 1
        self.quality.observe(w.index, latency / 1e3, lag)
        return row

    # -- push interface (live sources that arrive from elsewhere, e.g. a WebSocket) ------------
    def start(self, streams, measure_lag=True):
        """Begin a stream of the given kinds (``'audio'``/``'video'``); then :meth:`push` events
        and :meth:`finish`.  ``measure_lag``: lag = clock time since the first event − window end."""
        self.buffer = SyncBuffer(streams, window=self.window, hop=self.hop, tolerance=self.tolerance,
                                 sample_rate=self.predictor.config.audio.sample_rate,
                                 num_frames=self.predictor.config.face.num_frames, min_partial=self.min_partial)
        carried = set(streams) & set(self.modalities) & {"audio", "video"}
        self.quality.max_level = len(LEVELS) - 1 if len(carried) >= 2 else len(LEVELS) - 2
        self._speed = 1.0 if measure_lag else None
        self._t0 = None
        self._started = time.perf_counter()

    def push(self, ev):
        return self.push_all([ev])

    def push_all(self, events, max_windows=None):
        """Push a batch of events; returns the rows of the windows they made ready.

        ``max_windows``: when the batch makes more windows ready than this (the stream fell
        that far behind), only the newest are processed; the older ones are skipped and counted
        (``skipped_windows`` in the summary), so a live stream catches up instead of lagging
        further."""
        windows = []
        for ev in events:
            if self._t0 is None:
                self._t0 = self.clock() - (ev.ready if self._speed else 0.0)
            windows += self.buffer.push(ev)
        if max_windows is not None and len(windows) > max_windows:
            self.skipped_windows += len(windows) - max_windows
            windows = windows[-max_windows:]
        return [self.process(w) for w in windows]

    def finish(self):
        rows = [self.process(w) for w in self.buffer.finish()]
        self.processing_seconds = time.perf_counter() - self._started
        self.stream_seconds = max(self.buffer.ended.values()) if self.buffer.ended else 0.0
        return rows

    def run(self, sources, live=False, realtime=True, transform=None, speed=1.0):
        """Yield one result dict per window. ``transform``: optional function on the merged event
        iterator (tests use it to drop frames)."""
        self.start([s.kind for s in sources], measure_lag=live or realtime)
        self._speed = (1.0 if live else float(speed)) if (live or realtime) else None
        self.warmup()
        events = live_merge(sources) if live else merge(sources)
        if transform is not None:
            events = transform(events)
        self.pacer = Pacer(realtime=realtime and not live, speed=speed)
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="audio-features") as self.executor:
            for ev in self.pacer(events):
                if self._t0 is None and self._speed is not None:
                    self._t0 = self.clock() - ev.ready / self._speed
                for w in self.buffer.push(ev):
                    yield self.process(w)
            for w in self.buffer.finish():
                yield self.process(w)
        self.executor = None
        self.processing_seconds = time.perf_counter() - t0 - self.pacer.slept
        self.stream_seconds = max(self.buffer.ended.values()) if self.buffer.ended else 0.0

    def summary(self):
        lat = self.latencies
        st = self.buffer.stats if self.buffer else {}
        dur = self.stream_seconds
        return {
            "windows": len(lat),
            "partial_windows": st.get("partial_windows", 0),
            "skipped_windows": self.skipped_windows,
            "window_latency_ms": ({"median": round(statistics.median(lat), 3),
                                   "p95": round(float(np.percentile(lat, 95)), 3),
                                   "max": round(max(lat), 3)} if lat else None),
            "features_ms_median": round(statistics.median(f for f, _ in self.split_ms), 3) if lat else None,
            "model_ms_median": round(statistics.median(m for _, m in self.split_ms), 3) if lat else None,
            "stream_seconds": round(dur, 3),
            "processing_seconds": round(self.processing_seconds, 3),
            "realtime_factor": round(self.processing_seconds / dur, 4) if dur > 0 else None,
            "model_realtime_factor": round(sum(lat) / 1e3 / dur, 4) if dur > 0 else None,
            "dropped": {k: st.get(k, 0) for k in ("late_frames", "late_audio_chunks", "unpaired_frame_samples")},
            "audio_gap_seconds": round(st.get("audio_gap_seconds", 0.0), 3),
            "received": {"frames": st.get("frames", 0), "audio_chunks": st.get("audio_chunks", 0)},
            "windows_missing": dict(self.missing),
            "quality": {"latency_budget": self.latency_budget,
                        "windows_per_level": {LEVELS[k].name: v for k, v in sorted(self.levels_used.items())},
                        "changes": [{"window": i, "from": a, "to": b, "load_s": x}
                                    for i, a, b, x in self.quality.changes]},
            "faces": {"detector": self.face_detector, "detect_every": self.face_cache.base_every,
                      "detections": self.face_cache.detections, "tracked": self.face_cache.tracked},
            "settings": {"window": self.window, "hop": self.hop, "tolerance": self.tolerance,
                         "ema": self.ema.alpha, "model_precision": self.predictor.model.precision},
        }
