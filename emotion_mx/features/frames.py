"""Video frames with their true presentation times (PyAV): the one place media time is read.

Every frame's time is its presentation timestamp from the container (``pts * time_base``),
relative to the container's start (the origin ffmpeg gives the audio it decodes, so audio
sample ``n / sr`` and a frame at ``t`` are the same instant).  Never ``index / fps``: on a
variable-frame-rate file (phone recordings; 2 s at 25 fps then 2 s at 5 fps, OpenCV reports
16.3 fps) frame 50 is shown at 2.00 s but ``50 / 16.3`` stamps it 3.07 s.

Why PyAV and not OpenCV: ``CAP_PROP_FPS``/``CAP_PROP_POS_FRAMES`` assume a constant rate;
PyAV hands out each decoded frame's own timestamp and seeks by time.

* :func:`probe` — duration, start offsets of the video and audio streams, frame count;
* :func:`iter_frames` — ``(t, frame)`` from a time on (seeks to the keyframe before it); a
  packet that fails to decode is skipped and counted (its time shows the previous frame, as a
  player would);
* :func:`frames_at` — the frame shown at each of a list of times (latest frame at or before it;
  before the first frame: the first frame).
"""
import dataclasses
import logging
import os

import numpy as np

from ..errors import BadItem

log = logging.getLogger(__name__)

__all__ = ["Probe", "probe", "iter_frames", "frames_at"]


@dataclasses.dataclass(frozen=True)
class Probe:
    duration: float          # seconds, end of the video stream (0 if unknown)
    video: bool              # has a video stream
    audio_offset: float      # audio stream start - container start, seconds (0 without audio)
    frames: int              # frame count from the container (0 if unknown)
    width: int = 0           # frame size from the stream header (0 without video)
    height: int = 0


def _open(path):
    import av
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise BadItem(f"video file not found: {path}")
    try:
        return av.open(path)
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise BadItem(f"cannot open video {path} (corrupt or unsupported container/codec: {e})") from None


def _origin(container):
    return container.start_time / 1e6 if container.start_time is not None else 0.0


def probe(path):
    """:class:`Probe` of a media file (raises :class:`BadItem` if it cannot be opened)."""
    with _open(path) as c:
        origin = _origin(c)
        v = c.streams.video[0] if c.streams.video else None
        a = c.streams.audio[0] if c.streams.audio else None
        duration = 0.0
        if v is not None and v.duration is not None and v.time_base is not None:
            start = float(v.start_time * v.time_base) if v.start_time is not None else origin
            duration = start + float(v.duration * v.time_base) - origin
        elif c.duration is not None:
            duration = c.duration / 1e6
        audio_offset = 0.0
        if a is not None and a.start_time is not None and a.time_base is not None:
            audio_offset = max(0.0, float(a.start_time * a.time_base) - origin)
        return Probe(duration=duration, video=v is not None, audio_offset=audio_offset,
                     frames=int(v.frames or 0) if v is not None else 0,
                     width=int(v.codec_context.width or 0) if v is not None else 0,
                     height=int(v.codec_context.height or 0) if v is not None else 0)


def _decode(packet):
    """Frames of one packet (a seam for tests that simulate a corrupt packet)."""
    return packet.decode()


def iter_frames(path, start=None, stats=None):
    """``(t, av.VideoFrame)`` in presentation order from the keyframe at or before ``start``.

    ``t``: seconds from the container start.  Packets that fail to decode are skipped
    (``stats['bad_packets']`` counts them when a dict is given).  Raises :class:`BadItem`
    for a file without a video stream.
    """
    import av
    with _open(path) as c:
        if not c.streams.video:
            raise BadItem(f"no video stream in {os.fspath(path)}")
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        origin = _origin(c)
        tb = stream.time_base
        if start and start > 0:
            try:
                c.seek(int((start + origin) / tb), stream=stream, backward=True)
            except av.error.FFmpegError:
                c.seek(0, stream=stream)
        last = None
        try:
            for packet in c.demux(stream):
                try:
                    frames = _decode(packet)
                except av.error.FFmpegError:
                    if stats is not None:
                        stats["bad_packets"] = stats.get("bad_packets", 0) + 1
                    continue
                for frame in frames:
                    pts = frame.pts if frame.pts is not None else frame.dts
                    if pts is None:
                        t = (last if last is not None else 0.0) + 1e-3
                    else:
                        t = float(pts * tb) - origin
                    last = t
                    yield t, frame
        except av.error.FFmpegError as e:       # demuxing broke part-way: stop there
            log.warning("%s: decoding stopped at %.2f s (%s)", os.fspath(path), last or 0.0, e)
            if stats is not None:
                stats["bad_packets"] = stats.get("bad_packets", 0) + 1


def to_bgr(frame):
    """``(H, W, 3) uint8`` BGR image of an ``av.VideoFrame`` (OpenCV's layout)."""
    return frame.to_ndarray(format="bgr24")


def frames_at(path, times, stats=None):
    """``(images, frame_times)``: the frame shown at each of ``times`` (seconds, any order).

    Shown at ``c`` = the latest frame with ``t <= c``; a time before the first decodable
    frame takes the first one.  Decodes from the keyframe before ``min(times)`` up to the first
    frame after ``max(times)``; each chosen frame is converted once.
    """
    times = np.asarray(times, dtype=np.float64)
    order = np.argsort(times, kind="stable")
    images, chosen = [None] * len(times), [0.0] * len(times)
    k, prev, cache = 0, None, {}

    def pick(t, frame):
        if t not in cache:
            cache[t] = to_bgr(frame)
        return cache[t]

    for t, frame in iter_frames(path, start=float(times[order[0]]) if len(times) else None, stats=stats):
        while k < len(order) and t > times[order[k]] + 1e-9:
            src = prev if prev is not None else (t, frame)
            images[order[k]], chosen[order[k]] = pick(*src), src[0]
            k += 1
        if k == len(order):
            break
        prev = (t, frame)
    while k < len(order) and prev is not None:          # times after the last frame
        images[order[k]], chosen[order[k]] = pick(*prev), prev[0]
        k += 1
    if len(times) and prev is None and images[order[0]] is None:
        raise BadItem(f"no readable frames in video {os.fspath(path)} (corrupt or unsupported codec)")
    return images, np.asarray(chosen, dtype=np.float64)
