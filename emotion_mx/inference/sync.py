"""Synchronising buffer: timestamped audio chunks and frames → sliding windows.

Semantics (docs/inference.md):

* Windows are ``[k * hop, k * hop + window)`` in stream time, ``k = 0, 1, ...``.
* A window is **ready** when every stream that has not ended has delivered data up to its end
  (audio: samples up to ``end``; video: a frame at or after ``end``), or when the most advanced
  stream is ``tolerance`` past its end — a stream lagging by more than that is not waited for.
* Data that arrives for an already emitted window (timestamp before the end of the last emitted
  window) is **late**: dropped and counted (``late_frames`` / ``late_audio_chunks``), so a
  frame or chunk is used by all the windows covering it or by none.
* **Audio** of a window: samples ``[round(start * sr), round(min(end, audio_end) * sr))``, gaps
  zero-filled; no real sample in the window → no audio.
* **Frames** of a window: ``num_frames`` sample times at the centres of equal slices of
  ``[start, min(end, video_end)]`` (as ``extract_faces`` does for a segment); each takes the
  frame shown at that time (latest frame at or before it) if it was still on screen within
  ``tolerance`` (``time <= frame.t + frame.duration + tolerance``: a 5 fps stretch of a
  variable-frame-rate file is paired right), else the nearest frame within ``tolerance``; a sample time with no frame within tolerance is
  skipped (counted as ``unpaired_frame_samples``).
* **End of stream** (:meth:`SyncBuffer.finish`): the remaining full windows are emitted; then one
  last partial window ``[k * hop, stream_end)`` if it holds at least ``min_partial`` seconds
  (default half a window) and reaches past the last emitted window; shorter tails are dropped.
"""
import dataclasses
from typing import List, Optional

import numpy as np

from ..errors import EmotionMXError

EPS = 1e-6


@dataclasses.dataclass
class Window:
    index: int
    start: float
    end: float
    partial: bool
    wave: Optional[np.ndarray]          # (S,) float32, or None: no audio in the window
    images: list                        # sampled BGR frames (<= num_frames)
    frame_times: List[float]            # timestamps of the sampled frames
    sample_times: List[float]           # the sample times they were paired with
    audio_coverage: float               # fraction of the window with real samples


class SyncBuffer:
    """``push(event) -> [Window]``, then ``finish() -> [Window]`` when the sources are done."""

    def __init__(self, streams, window=2.0, hop=0.5, tolerance=0.1, sample_rate=16000, num_frames=8,
                 min_partial=None):
        self.streams = tuple(sorted(set(streams)))
        if not self.streams or set(self.streams) - {"audio", "video"}:
            raise EmotionMXError(f"streams must be audio and/or video, got {streams}")
        if not (window > 0 and 0 < hop and tolerance >= 0):
            raise EmotionMXError("--window and --hop must be positive and --tolerance >= 0")
        self.window, self.hop, self.tolerance = float(window), float(hop), float(tolerance)
        self.sr, self.num_frames = int(sample_rate), int(num_frames)
        self.min_partial = self.window / 2 if min_partial is None else float(min_partial)
        self.next_index = 0
        self.emitted_until = 0.0               # end of the last emitted window
        self.watermark = {s: 0.0 for s in self.streams}
        self.ended = {}                        # stream → end time
        self._a0 = 0                           # sample index of _audio[0]
        self._audio = np.zeros(0, np.float32)
        self._valid = np.zeros(0, bool)
        self._frames = []                      # Frame events, by time
        self.stats = {"frames": 0, "audio_chunks": 0, "late_frames": 0, "late_audio_chunks": 0,
                      "unpaired_frame_samples": 0, "audio_gap_seconds": 0.0, "windows": 0, "partial_windows": 0}

    # -- input -------------------------------------------------------------------------------
    def push(self, ev):
        """Add an event (Frame, AudioChunk or End); returns the windows that became ready."""
        if ev.kind not in self.watermark:
            return []                          # a stream this buffer does not use
        if type(ev).__name__ == "End":
            self.ended[ev.kind] = max(ev.t, self.watermark[ev.kind])
            self.watermark[ev.kind] = self.ended[ev.kind]
            return self._ready()
        late = ev.t < self.emitted_until - EPS
        if ev.kind == "video":
            self.stats["frames"] += 1
            if late:
                self.stats["late_frames"] += 1
                return []
            self._frames.append(ev)
            if len(self._frames) > 1 and ev.t < self._frames[-2].t:
                self._frames.sort(key=lambda f: f.t)
            self.watermark["video"] = max(self.watermark["video"], ev.t)
        else:
            self.stats["audio_chunks"] += 1
            if late:
                self.stats["late_audio_chunks"] += 1
                return []
            self._add_audio(ev)
            self.watermark["audio"] = max(self.watermark["audio"], ev.end)
        return self._ready()

    def _add_audio(self, ch):
        if ch.sample_rate != self.sr:
            raise EmotionMXError(f"audio chunk at {ch.sample_rate} Hz; the model needs {self.sr} Hz")
        first = int(round(ch.t * self.sr))
        have = self._a0 + len(self._audio)
        samples = ch.samples
        if first < have:                       # overlap with what we hold: keep the earlier data
            samples = samples[have - first:]
            first = have
        if first > have:                       # a gap: zeros, marked invalid
            self.stats["audio_gap_seconds"] += (first - have) / self.sr
            self._audio = np.concatenate([self._audio, np.zeros(first - have, np.float32)])
            self._valid = np.concatenate([self._valid, np.zeros(first - have, bool)])
        self._audio = np.concatenate([self._audio, samples.astype(np.float32, copy=False)])
        self._valid = np.concatenate([self._valid, np.ones(len(samples), bool)])

    # -- windows -----------------------------------------------------------------------------
    def _bounds(self, k):
        start = round(k * self.hop, 9)
        return start, round(start + self.window, 9)

    def _ready(self):
        out = []
        while True:
            start, end = self._bounds(self.next_index)
            live = [s for s in self.streams if s not in self.ended]
            if not live:
                break                          # everything ended: finish() decides the rest
            if all(self.watermark[s] >= end - EPS for s in live) or max(self.watermark.values()) >= end + self.tolerance:
                out.append(self._emit(start, end, partial=False))
            else:
                break
        return out

    def finish(self):
        """All sources are done: remaining full windows, then the partial tail (see module doc)."""
        for s in self.streams:
            self.ended.setdefault(s, self.watermark[s])
        stream_end = max(self.ended.values())
        out = []
        while True:
            start, end = self._bounds(self.next_index)
            if end <= stream_end + EPS:
                out.append(self._emit(start, end, partial=False))
                continue
            if stream_end - start >= self.min_partial - EPS and stream_end > self.emitted_until + EPS:
                out.append(self._emit(start, round(stream_end, 9), partial=True))
            break
        return out

    def _emit(self, start, end, partial):
        wave, coverage = self._window_audio(start, end)
        images, times, centres = self._window_frames(start, end)
        w = Window(self.next_index, start, end, partial, wave, images, times, centres, coverage)
        self.next_index += 1
        self.emitted_until = max(self.emitted_until, end)
        self.stats["windows"] += 1
        self.stats["partial_windows"] += int(partial)
        self._trim(self._bounds(self.next_index)[0])
        return w

    def _window_audio(self, start, end):
        if "audio" not in self.streams:
            return None, 0.0
        stop = min(end, self.ended.get("audio", end))
        i0, i1 = int(round(start * self.sr)) - self._a0, int(round(stop * self.sr)) - self._a0
        i0, i1 = max(i0, 0), min(i1, len(self._audio))
        if i1 <= i0 or not self._valid[i0:i1].any():
            return None, 0.0
        coverage = float(self._valid[i0:i1].sum()) / max(1, int(round((end - start) * self.sr)))
        return self._audio[i0:i1].copy(), coverage

    def _window_frames(self, start, end):
        if "video" not in self.streams or not self._frames:
            return [], [], []
        stop = min(end, self.ended.get("video", end))
        if stop <= start:
            return [], [], []
        centres = start + (np.arange(self.num_frames) + 0.5) * (stop - start) / self.num_frames
        times = np.array([f.t for f in self._frames])
        images, used, paired = [], [], []
        for c in centres:
            j = int(np.searchsorted(times, c + EPS, side="right")) - 1   # frame shown at time c
            if j < 0 or c - times[j] > self._frames[j].duration + self.tolerance + EPS:
                near = int(np.argmin(np.abs(times - c)))
                j = near if abs(times[near] - c) <= self.tolerance + EPS else -1
            if j < 0:
                self.stats["unpaired_frame_samples"] += 1
                continue
            images.append(self._frames[j].image)
            used.append(float(times[j]))
            paired.append(float(c))
        return images, used, paired

    def _trim(self, next_start):
        """Forget data no later window can use."""
        keep_from = next_start - self.tolerance - EPS
        self._frames = [f for f in self._frames if f.t >= keep_from] or self._frames[-1:]
        cut = int(round(next_start * self.sr)) - self._a0
        if cut > 0:
            self._audio, self._valid = self._audio[cut:], self._valid[cut:]
            self._a0 += cut
