"""The live page's WebSocket protocol, validated at the edge (before anything is buffered).

Text messages are JSON objects:

* ``{"type": "start", "audio": bool, "video": bool[, "catch_up": bool][, "text": str][, "key": str]}``
  — a live stream; or ``{"type": "start", "file": id[, "realtime": bool][, "text": str][, "key": str]}``
  — an uploaded file.  ``text``: a transcript for a model with a text input (every window
  sees it until a ``text`` message replaces it); ``key``: the API key, for browsers, whose
  WebSockets cannot send headers.  Always the first message.
* ``{"type": "text", "text": str}`` — a new transcript from the stream's current time on;
* ``{"type": "stop"}`` — the end of the stream.

Binary messages (live streams only): one byte ``a``/``v``, a little-endian float64 ``t`` (seconds
since the stream's start), then 16 kHz mono float32 PCM (nominally in [-1, 1], at most
``MAX_SAMPLE`` in magnitude) (``a``) or a JPEG/PNG (``v``).

Every refused message gets one ``{"type": "error", "field": name, "error": message}`` naming
what is wrong (``message``, ``type``, a start field, ``kind``, ``t``, ``payload``, ``rate``...):
:class:`ProtocolError`.  Limits (:class:`Limits`, all per connection):

* ``t`` may run at most ``max_ahead`` seconds past the newest timestamp the stream has
  accepted (its own clock: audio ends, frame times) and never past ``max_stream_seconds``, so
  no client timestamp makes the server zero-fill more than ``max_ahead`` seconds of audio;
* an audio message holds at most ``max_chunk_seconds`` of samples; a frame at most
  ``max_frame_bytes`` and ``max_frame_pixels`` (read from its header, before decoding) and
  at most ``max_fps`` frames fall into one second of stream time;
* ``max_messages_per_s`` messages per second on average (bursts of ``burst``), text messages
  of at most ``max_text_bytes``; media waiting for the model hold at most ``max_queue_bytes``
  (the connection is read no further until the model catches up);
* after ``max_errors`` refused messages the connection is closed (code 1008).
"""
import dataclasses
import io
import json
import math
import re
import struct
import time

import numpy as np

HEADER = struct.Struct("<cd")            # kind byte, float64 timestamp
KINDS = {b"a": "audio", b"v": "video"}
START_LIVE = {"type", "audio", "video", "catch_up", "text", "key"}
START_FILE = {"type", "file", "realtime", "text", "key"}
UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_SAMPLE = 16.0                        # PCM is nominally [-1, 1]; browsers' resampling overshoots it
MAX_UPLOAD_MB = 200                      # POST /live/upload (emotion-mx live --max-upload-mb)


@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-connection limits of a live stream (see the module docstring); the defaults are
    what ``emotion-mx live`` and the service's ``/live`` use."""
    max_ahead: float = 3.0               # seconds a timestamp may run past the stream's clock
    max_stream_seconds: float = 4 * 3600.0
    max_chunk_seconds: float = 2.0       # of audio in one message
    max_frame_bytes: int = 2_000_000     # one encoded frame
    max_frame_pixels: int = 640 * 480    # the page sends 320 px wide frames
    max_fps: int = 15                    # frames per second of stream time (the page sends 5)
    max_text_bytes: int = 65536          # one text message
    max_transcript_chars: int = 5000
    max_messages_per_s: float = 100.0
    burst: int = 400
    max_queue_bytes: int = 32_000_000    # decoded media received, not yet processed
    max_errors: int = 20
    max_streams: int = 4                 # concurrent streams per server

    def __post_init__(self):
        from ..errors import EmotionMXError
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise EmotionMXError(f"live limit {f.name} must be a positive number, got {v!r}")


class ProtocolError(Exception):
    """A refused message: ``field`` names what is wrong; the message says what to send."""

    def __init__(self, field, message):
        super().__init__(message)
        self.field, self.message = field, message

    def to_json(self):
        return {"type": "error", "field": self.field, "error": self.message}


def _object(text, limits):
    if len(text) > limits.max_text_bytes:
        raise ProtocolError("message", f"text message of {len(text)} characters; at most {limits.max_text_bytes}")
    try:
        msg = json.loads(text)
    except RecursionError:
        raise ProtocolError("message", "JSON nested too deeply; send a flat JSON object") from None
    except ValueError:
        raise ProtocolError("message", "not valid JSON; send a JSON object such as {\"type\": \"stop\"}") from None
    if not isinstance(msg, dict):
        raise ProtocolError("message", f"expected a JSON object such as {{\"type\": \"stop\"}}, got "
                                       f"{_json_type(msg)}")
    kind = msg.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("type", "missing or not a string; use \"start\", \"text\" or \"stop\"")
    return msg, kind


def _json_type(value):
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _bool(msg, name, default):
    value = msg.get(name, default)
    if not isinstance(value, bool):
        raise ProtocolError(name, f"expected true or false, got {_json_type(value)}")
    return value


def _transcript(msg, limits, modalities):
    text = msg.get("text")
    if text is None:
        return None
    if not isinstance(text, str):
        raise ProtocolError("text", f"expected a string, got {_json_type(text)}")
    if len(text) > limits.max_transcript_chars:
        raise ProtocolError("text", f"{len(text)} characters; at most {limits.max_transcript_chars}")
    if "\x00" in text:
        raise ProtocolError("text", "contains a NUL character")
    if text.strip() and "text" not in modalities:
        raise ProtocolError("text", f"the model has no text input (it takes {', '.join(modalities)})")
    return text


def parse_start(message, limits, modalities):
    """The first message (a WebSocket text or bytes) → a validated start dict."""
    if not isinstance(message, str):
        raise ProtocolError("message", "the first message must be a JSON start message, e.g. "
                                       "{\"type\": \"start\", \"audio\": true, \"video\": true}")
    msg, kind = _object(message, limits)
    if kind != "start":
        raise ProtocolError("type", f"the first message must have \"type\": \"start\", not {kind[:40]!r}")
    allowed = START_FILE if "file" in msg else START_LIVE
    unknown = sorted(set(msg) - allowed)
    if unknown:
        raise ProtocolError(str(unknown[0])[:64], f"unknown field; a start message takes {', '.join(sorted(allowed))}")
    key = msg.get("key")
    if key is not None and not (isinstance(key, str) and len(key) <= 512):
        raise ProtocolError("key", "expected the API key as a string")
    start = {"type": "start", "key": key, "text": _transcript(msg, limits, modalities)}
    if "file" in msg:
        fid = msg["file"]
        if not isinstance(fid, str) or not UPLOAD_ID.match(fid):
            raise ProtocolError("file", "expected the id POST /live/upload answered (32 hex digits)")
        start.update(file=fid, realtime=_bool(msg, "realtime", True))
        return start
    start.update(audio=_bool(msg, "audio", False), video=_bool(msg, "video", False),
                 catch_up=_bool(msg, "catch_up", True))
    if not (start["audio"] or start["video"]):
        raise ProtocolError("audio", "the stream carries neither audio nor video: set \"audio\" and/or "
                                     "\"video\" to true (or stream an uploaded \"file\")")
    return start


def parse_control(message, limits, modalities):
    """A text message after the start → ``("stop", None)`` or ``("text", transcript)``."""
    msg, kind = _object(message, limits)
    if kind == "stop":
        extra = sorted(set(msg) - {"type"})
        if extra:
            raise ProtocolError(str(extra[0])[:64], "unknown field; a stop message is {\"type\": \"stop\"}")
        return "stop", None
    if kind == "text":
        extra = sorted(set(msg) - {"type", "text"})
        if extra:
            raise ProtocolError(str(extra[0])[:64], "unknown field; a text message is {\"type\": \"text\", \"text\": ...}")
        if "text" not in msg:
            raise ProtocolError("text", "missing; send {\"type\": \"text\", \"text\": \"...\"}")
        return "text", _transcript(msg, limits, modalities) or ""
    if kind == "start":
        raise ProtocolError("type", "the stream has already started")
    raise ProtocolError("type", f"unknown message type {kind[:40]!r}; use \"text\" or \"stop\"")


class RateLimit:
    """Token bucket: ``rate`` messages per second on average, bursts of ``burst``."""

    def __init__(self, rate, burst, clock=time.monotonic):
        self.rate, self.burst, self.clock = float(rate), float(burst), clock
        self.tokens, self.last = float(burst), clock()

    def take(self):
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def image_size(data):
    """``(width, height)`` from an encoded image's header (nothing is decoded), or None."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format not in ("JPEG", "PNG"):
                return None
            return im.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError, SyntaxError):
        return None


class StreamGuard:
    """Validates a live stream's binary messages against its own clock and the :class:`Limits`.

    ``check(message) -> (kind, t, payload, nbytes)`` (``nbytes``: its size once decoded); raises :class:`ProtocolError`.  The clock is the
    newest timestamp accepted (an audio chunk's end, a frame's time): a timestamp may run
    ``max_ahead`` past it, so a client can never make the server allocate more."""

    def __init__(self, limits, kinds, sample_rate):
        self.limits, self.kinds, self.sr = limits, set(kinds), int(sample_rate)
        self.clock = 0.0
        self.frames_per_second = {}              # int(t) → frames accepted in that second

    def check(self, message):
        lim = self.limits
        if len(message) <= HEADER.size:
            raise ProtocolError("payload", f"binary message of {len(message)} bytes: expected a kind byte, "
                                           "a float64 timestamp and the media")
        kind_byte, t = HEADER.unpack_from(message)
        kind = KINDS.get(kind_byte)
        if kind is None:
            raise ProtocolError("kind", "the first byte must be 'a' (audio) or 'v' (video)")
        if kind not in self.kinds:
            raise ProtocolError("kind", f"the stream was started without {kind}")
        if not math.isfinite(t) or t < 0:
            raise ProtocolError("t", f"timestamp {t!r}: expected seconds since the stream's start (>= 0)")
        if t > self.clock + lim.max_ahead:
            raise ProtocolError("t", f"timestamp {t:.6g} s runs {t - self.clock:.6g} s ahead of the stream "
                                     f"(at {self.clock:.3f} s); at most {lim.max_ahead:g} s ahead is accepted")
        payload = memoryview(message)[HEADER.size:]
        if kind == "audio":
            n = self._audio_samples(payload)
            end, nbytes = t + n / self.sr, 4 * n
        else:
            w, h = self._frame(payload, t)
            end, nbytes = t, 3 * w * h
        if end > lim.max_stream_seconds:
            raise ProtocolError("t", f"the stream would run past {lim.max_stream_seconds:g} s, the longest "
                                     "a live stream may run; start a new one")
        if kind == "video":
            second = int(t)
            self.frames_per_second[second] = self.frames_per_second.get(second, 0) + 1
            if len(self.frames_per_second) > 64:      # forget seconds long past
                for s in [s for s in self.frames_per_second if s < self.clock - 32]:
                    del self.frames_per_second[s]
        self.clock = max(self.clock, end)
        return kind, t, bytes(payload), nbytes

    def _audio_samples(self, payload):
        n, rest = divmod(len(payload), 4)
        if rest:
            raise ProtocolError("payload", f"audio payload of {len(payload)} bytes is not float32 samples "
                                           "(a multiple of 4 bytes)")
        if n > self.limits.max_chunk_seconds * self.sr:
            raise ProtocolError("payload", f"{n} samples in one message; at most {self.limits.max_chunk_seconds:g} s "
                                           f"({int(self.limits.max_chunk_seconds * self.sr)} samples at {self.sr} Hz)")
        samples = np.frombuffer(payload, dtype="<f4")
        if not np.all(np.isfinite(samples)) or np.abs(samples).max() > MAX_SAMPLE:
            raise ProtocolError("payload", f"audio samples must be finite float32 values within ±{MAX_SAMPLE:g} "
                                           "(PCM is nominally in [-1, 1])")
        return n

    def _frame(self, payload, t):
        lim = self.limits
        if len(payload) > lim.max_frame_bytes:
            raise ProtocolError("payload", f"frame of {len(payload)} bytes; at most {lim.max_frame_bytes}")
        size = image_size(payload)
        if size is None:
            raise ProtocolError("payload", "not a JPEG or PNG image")
        if size[0] * size[1] > lim.max_frame_pixels:
            raise ProtocolError("payload", f"frame of {size[0]}x{size[1]} pixels; at most {lim.max_frame_pixels} "
                                           "pixels (send smaller frames)")
        if self.frames_per_second.get(int(t), 0) >= lim.max_fps:
            raise ProtocolError("t", f"more than {lim.max_fps} frames within one second of stream time")
        return size
