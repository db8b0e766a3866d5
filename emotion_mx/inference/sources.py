"""Timestamped media sources for streaming: video frames, audio chunks, end markers.

A source is an iterable of events in its own time order, each with ``t`` (stream seconds, 0 =
start), ``kind`` (``'audio'``/``'video'``) and ``ready`` (when the data exists in real time:
a frame at its timestamp, an audio chunk at its end).  The last event of every source is an
:class:`End` carrying the stream's end time, so the synchroniser knows when a stream stops.

* :class:`VideoFrames` — a file's frames with their presentation times from the container
  (PyAV, :mod:`emotion_mx.features.frames`, the timing ``extract_faces`` uses too);
* :class:`AudioPipe` — a file's (first) audio track through the imageio-ffmpeg binary, piped as
  mono f32le at the model's sample rate and read in chunks;
* :class:`CameraFrames`, :class:`Microphone` — live devices (wall-clock timestamps); the
  microphone needs the ``sounddevice`` package.  Neither could be tested here (no devices).

:func:`merge` orders file sources by ``ready`` time; :func:`live_merge` interleaves live
sources with one reader thread each; :class:`Pacer` releases events at wall-clock pace
(``realtime=True``) or as fast as possible — the events, and so the outputs, are the same.
"""
import dataclasses
import heapq
import logging
import math
import os
import queue
import subprocess
import threading
import time

import numpy as np

from ..errors import EmotionMXError

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Frame:
    t: float              # seconds
    image: np.ndarray     # (H, W, 3) uint8 BGR
    duration: float       # display time, seconds (files: until the next frame; cameras: 1 / fps)
    kind = "video"

    @property
    def ready(self):
        return self.t


@dataclasses.dataclass
class AudioChunk:
    t: float              # start, seconds
    samples: np.ndarray   # (S,) float32 mono
    sample_rate: int
    kind = "audio"

    @property
    def end(self):
        return self.t + len(self.samples) / self.sample_rate

    @property
    def ready(self):
        return self.end


@dataclasses.dataclass
class End:
    kind: str
    t: float              # end of the stream, seconds
    reason: str = "end of stream"

    @property
    def ready(self):
        return self.t


class VideoFrames:
    """Frames of a video file, in order, with their presentation times from the container
    (:func:`emotion_mx.features.frames.iter_frames`; right on variable-frame-rate files)."""

    kind = "video"

    def __init__(self, path):
        from ..errors import BadItem
        from ..features.frames import probe
        if not os.path.isfile(path):
            raise EmotionMXError(f"video file not found: {path}")
        self.path = path
        try:
            info = probe(path)
        except BadItem as e:
            raise EmotionMXError(e.reason) from None
        if not info.video:
            raise EmotionMXError(f"no video stream in {path}")
        self.count = info.frames
        self.fps = info.frames / info.duration if info.frames and info.duration > 0 else None  # mean rate
        self.stats = {}

    def __iter__(self):
        from ..features.frames import iter_frames, to_bgr
        t, index, duration = 0.0, 0, 1.0 / (self.fps or 25.0)
        pending = None                                  # one frame of look-ahead: its display time
        for t, frame in iter_frames(self.path, stats=self.stats):
            if pending is not None:
                duration = max(t - pending[0], 1e-3)
                yield Frame(pending[0], to_bgr(pending[1]), duration)
            pending = (t, frame)
            index += 1
        if pending is not None:                         # the last frame: its predecessor's duration
            yield Frame(pending[0], to_bgr(pending[1]), duration)
        if self.stats.get("bad_packets"):
            log.warning("%s: %d undecodable packets skipped", self.path, self.stats["bad_packets"])
        yield End(self.kind, t + duration if index else 0.0)


class AudioPipe:
    """Mono f32le audio of any ffmpeg-readable file, in chunks of ``chunk_seconds``.

    A file without an audio track gives only an :class:`End` at 0 (logged): the stream then
    has no audio.  A decoding error part-way ends the audio there (logged).
    """

    kind = "audio"

    def __init__(self, path, sample_rate=16000, chunk_seconds=0.1):
        if not os.path.isfile(path):
            raise EmotionMXError(f"audio file not found: {path}")
        self.path, self.sample_rate = path, int(sample_rate)
        self.chunk = max(1, int(round(chunk_seconds * sample_rate)))
        self.error = None
        self.offset = _audio_offset(path)

    def command(self):
        import imageio_ffmpeg
        return [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error", "-i", self.path,
                "-map", "0:a:0", "-vn", "-ac", "1", "-ar", str(self.sample_rate),
                "-f", "f32le", "-acodec", "pcm_f32le", "-"]

    def __iter__(self):
        proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        done = 0
        try:
            while True:
                data = _read_exactly(proc.stdout, self.chunk * 4)
                if len(data) >= 4:
                    samples = np.frombuffer(data[: len(data) // 4 * 4], dtype="<f4").astype(np.float32)
                    yield AudioChunk(self.offset + done / self.sample_rate, samples, self.sample_rate)
                    done += len(samples)
                if len(data) < self.chunk * 4:
                    break
            stderr = proc.stderr.read().decode("utf-8", "replace")
            if proc.wait() != 0:
                self.error = ("no audio track" if "matches no streams" in stderr
                              else (stderr.strip().splitlines() or ["ffmpeg failed"])[0])
                log.warning("%s: audio %s after %.2f s", self.path, self.error, done / self.sample_rate)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        yield End(self.kind, self.offset + done / self.sample_rate, reason=self.error or "end of stream")


def _audio_offset(path):
    """Start of the audio stream after the container's start, seconds (0 if unknown)."""
    from ..errors import BadItem
    from ..features.frames import probe
    try:
        return probe(path).audio_offset
    except BadItem:
        return 0.0          # ffmpeg reports the real problem when it reads the file


def _read_exactly(stream, n):
    parts, got = [], 0
    while got < n:
        data = stream.read(n - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


class CameraFrames:
    """Frames of camera ``index`` (``cv2.VideoCapture(index)``), wall-clock timestamps.

    Untested here: this machine has no camera.
    """

    kind = "video"

    def __init__(self, index=0, max_seconds=None, clock=None):
        import cv2
        self.cap = cv2.VideoCapture(int(index))
        if not self.cap.isOpened():
            raise EmotionMXError(f"camera {index} cannot be opened (no camera, or it is in use)")
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.duration = 1.0 / fps if fps and math.isfinite(fps) and fps > 0 else 1.0 / 30
        self.max_seconds, self.clock = max_seconds, clock or StreamClock()
        self.stopped = threading.Event()

    def __iter__(self):
        t = 0.0
        try:
            while not self.stopped.is_set():
                ok, image = self.cap.read()
                t = self.clock.now()
                if not ok or image is None or (self.max_seconds and t >= self.max_seconds):
                    break
                yield Frame(t, image, self.duration)
        finally:
            self.cap.release()
        yield End(self.kind, t)


class Microphone:
    """The default input device through ``sounddevice``, in chunks (sample-count timestamps).

    Untested here: no sound device, and ``sounddevice`` is not installed.
    """

    kind = "audio"

    def __init__(self, sample_rate=16000, chunk_seconds=0.1, max_seconds=None):
        try:
            import sounddevice  # noqa: F401
        except ImportError:
            raise EmotionMXError("--mic needs the 'sounddevice' package (pip install sounddevice; "
                                 "PortAudio must be present)") from None
        self.sample_rate, self.max_seconds = int(sample_rate), max_seconds
        self.chunk = max(1, int(round(chunk_seconds * sample_rate)))
        self.stopped = threading.Event()

    def __iter__(self):
        import sounddevice as sd
        q = queue.Queue()
        done = 0
        with sd.InputStream(samplerate=self.sample_rate, channels=1, dtype="float32", blocksize=self.chunk,
                            callback=lambda data, frames, t, status: q.put(data[:, 0].copy())):
            while not self.stopped.is_set():
                samples = q.get()
                yield AudioChunk(done / self.sample_rate, samples, self.sample_rate)
                done += len(samples)
                if self.max_seconds and done >= self.max_seconds * self.sample_rate:
                    break
        yield End(self.kind, done / self.sample_rate)


class StreamClock:
    """Seconds since the first call of :meth:`now` (shared by live sources)."""

    def __init__(self):
        self._t0, self._lock = None, threading.Lock()

    def now(self):
        with self._lock:
            if self._t0 is None:
                self._t0 = time.monotonic()
            return time.monotonic() - self._t0


def merge(sources):
    """Events of file sources in ``ready`` order (ties: the order of ``sources``)."""
    return heapq.merge(*sources, key=lambda e: e.ready)


def live_merge(sources):
    """Events of live sources as they arrive (one reader thread per source)."""
    q = queue.Queue(maxsize=256)
    stop = threading.Event()

    def read(src):
        try:
            for ev in src:
                q.put(ev)
                if stop.is_set():
                    break
        except Exception as e:  # surfaced in the consumer
            q.put(e)
        q.put(None)

    threads = [threading.Thread(target=read, args=(s,), daemon=True) for s in sources]
    for th in threads:
        th.start()
    remaining = len(threads)
    try:
        while remaining:
            ev = q.get()
            if ev is None:
                remaining -= 1
            elif isinstance(ev, Exception):
                raise ev
            else:
                yield ev
    finally:
        stop.set()
        for s in sources:
            if hasattr(s, "stopped"):
                s.stopped.set()


class Pacer:
    """Release events at wall-clock pace (``realtime``) or at once; counts the time slept."""

    def __init__(self, realtime=True, speed=1.0):
        self.realtime, self.speed = realtime, float(speed)
        self.slept = 0.0

    def __call__(self, events):
        t0 = time.monotonic()
        for ev in events:
            if self.realtime:
                wait = ev.ready / self.speed - (time.monotonic() - t0)
                if wait > 0:
                    time.sleep(wait)
                    self.slept += wait
            yield ev
