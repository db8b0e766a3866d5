"""Realtime streaming inference (``tools/stream.py``): sources → sync windows → model → JSON lines.

:func:`open_sources` builds the sources for the model's modalities; :class:`StreamRunner`
pushes their events through a :class:`~.sync.SyncBuffer`, turns each window into features
(:func:`~.window.window_features`), runs the :class:`~.predict.Predictor` and yields one result
dict per window (with an exponential moving average of the probabilities); :meth:`summary`
gives latency statistics, the realtime factor and the dropped-data counters.
"""
import concurrent.futures
import logging
import os
import statistics
import time

import numpy as np

from ..errors import EmotionMXError
from .sources import AudioPipe, CameraFrames, Microphone, Pacer, StreamClock, VideoFrames, live_merge, merge
from .subtitles import text_between
from .sync import SyncBuffer, Window
from .window import FaceCache, window_features

log = logging.getLogger(__name__)


def open_sources(modalities, sample_rate, video=None, camera=None, mic=False, audio=None,
                 chunk_seconds=0.1, max_seconds=None):
    """``(sources, live)`` for the model's modalities. ``audio`` (a file) overrides the video's
    own audio track; a modality the model lacks is not decoded."""
    if (video is None) == (camera is None):
        raise EmotionMXError("give exactly one of --video FILE or --camera N")
    if mic and camera is None:
        raise EmotionMXError("--mic goes with --camera (a file's audio comes from --video or --audio)")
    if mic and audio:
        raise EmotionMXError("give --mic or --audio, not both")
    if audio and "audio" not in modalities:
        raise EmotionMXError(f"--audio given but the model has no audio input (it takes {', '.join(modalities)})")
    if video is not None and not os.path.isfile(video):
        raise EmotionMXError(f"video file not found: {video}")
    sources = []
    if camera is not None:
        clock = StreamClock()
        if "video" in modalities:
            sources.append(CameraFrames(camera, max_seconds=max_seconds, clock=clock))
        if "audio" in modalities and mic:
            sources.append(Microphone(sample_rate, chunk_seconds, max_seconds=max_seconds))
        if "audio" in modalities and audio:
            raise EmotionMXError("a live camera cannot be synchronised with an audio file; use --mic")
        if not sources:
            raise EmotionMXError(f"the model takes {', '.join(modalities)}: a camera alone gives it nothing "
                                 "(add --mic for audio)")
        return sources, True
    if "video" in modalities:
        sources.append(VideoFrames(video))
    if "audio" in modalities:
        sources.append(AudioPipe(audio or video, sample_rate, chunk_seconds))
    if not sources:
        raise EmotionMXError(f"the model takes {', '.join(modalities)}: nothing to read from --video")
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


def _probs(labels, p):
    return {l: round(float(x), 6) for l, x in zip(labels, p)}


class StreamRunner:
    """Windows of a stream → predictions. ``cues``: subtitle cues (text modality) or None."""

    def __init__(self, predictor, window=2.0, hop=0.5, tolerance=0.1, ema=0.5, cues=None, min_partial=None):
        self.predictor = predictor
        self.labels = predictor.labels
        self.modalities = predictor.modalities
        self.cues = cues or []
        if cues and "text" not in self.modalities:
            raise EmotionMXError(f"--transcript given but the model has no text input (it takes {', '.join(self.modalities)})")
        self.window, self.hop, self.tolerance, self.min_partial = window, hop, tolerance, min_partial
        self.ema = EMA(ema)
        self.face_cache = FaceCache(predictor.config.face)
        self.executor = None    # a one-thread pool for audio features while run() is going
        self.latencies = []
        self.split_ms = []      # (features, model) per window
        self.missing = {m: 0 for m in self.modalities}
        self.buffer = None
        self.processing_seconds = 0.0
        self.stream_seconds = 0.0
        self.pacer = None

    def warmup(self, seconds=None):
        """One throw-away window of synthetic media through features and model, so that one-off
        costs (numba compilation in librosa, MXNet graph set-up) do not count as latency."""
        seconds = seconds or self.window
        sr = self.predictor.config.audio.sample_rate
        wave = np.random.RandomState(0).normal(0, 0.1, int(seconds * sr)).astype(np.float32)
        images = [np.full((64, 64, 3), 128, np.uint8)] * self.predictor.config.face.num_frames
        w = Window(-1, 0.0, seconds, False, wave, images, [], [], 1.0)
        feats, _ = window_features(w, "hello", self.predictor.config, self.modalities)
        self.predictor.predict_features([feats])

    def process(self, w):
        """One :class:`~.sync.Window` → result dict (JSON-ready)."""
        t0 = time.perf_counter()
        text = text_between(self.cues, w.start, w.end) if self.cues else ""
        feats, missing = window_features(w, text, self.predictor.config, self.modalities, self.face_cache,
                                         self.executor, self.predictor.model.settings.audio_feature)
        t1 = time.perf_counter()
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
        t2 = time.perf_counter()
        latency = (t2 - t0) * 1e3
        self.latencies.append(latency)
        self.split_ms.append(((t1 - t0) * 1e3, (t2 - t1) * 1e3))
        row["latency_ms"] = round(latency, 3)
        return row

    def run(self, sources, live=False, realtime=True, transform=None):
        """Yield one result dict per window. ``transform``: optional function on the merged event
        iterator (tests use it to drop frames)."""
        streams = [s.kind for s in sources]
        self.buffer = SyncBuffer(streams, window=self.window, hop=self.hop, tolerance=self.tolerance,
                                 sample_rate=self.predictor.config.audio.sample_rate,
                                 num_frames=self.predictor.config.face.num_frames, min_partial=self.min_partial)
        self.warmup()
        events = live_merge(sources) if live else merge(sources)
        if transform is not None:
            events = transform(events)
        self.pacer = Pacer(realtime=realtime and not live)
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="audio-features") as self.executor:
            for ev in self.pacer(events):
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
            "settings": {"window": self.window, "hop": self.hop, "tolerance": self.tolerance,
                         "ema": self.ema.alpha, "model_precision": self.predictor.model.precision},
        }
