"""FastAPI router of the live page (see :mod:`emotion_mx.live`).

Routes (relative to the mount point, ``/live``):

* ``GET /`` — the page; ``GET /static/{file}`` — its script and style (no build step, offline);
* ``GET /info`` — labels, modalities, window settings, limits and the latency budget;
* ``POST /upload`` — an audio or video file (multipart ``file``) → ``{"id": ...}`` for a file
  stream.  Limited in size (``max_upload_mb``) and type (the service's audio/video types),
  decoded before it is accepted (422 naming ``file`` otherwise); at most ``MAX_PENDING_UPLOADS``
  wait for their stream (the oldest is removed), each is removed once streamed;
* ``WS /ws`` — one stream; the protocol and its limits are :mod:`.protocol`'s.  The server
  answers ``{"type": "window", ...row}`` per window (the CLI's JSON line), ``{"type": "summary",
  ...}`` at the end and ``{"type": "error", "field": ..., "error": ...}`` for each message it
  refuses.

With an API key (:mod:`emotion_mx.serve.security`) ``/info``, ``/upload`` and ``/ws`` need it
(the WebSocket in a header or as ``"key"`` in its start message); the page and its static
files do not.

Each stream's events are processed on a worker thread (the model runs under one lock shared by
all streams), so a slow machine shows up as lag, and the runner steps its quality down.  When
the worker finds more than ``MAX_BACKLOG_WINDOWS`` windows ready at once, it processes only the
newest (the rest are counted as ``skipped_windows``): a live view catches up rather than
falling further behind (``"catch_up": false`` in the start message processes every window).
"""
import asyncio
import collections
import concurrent.futures
import json
import logging
import math
import os
import queue
import shutil
import tempfile
import threading
import uuid
import weakref

import numpy as np
from fastapi import APIRouter, FastAPI, File, HTTPException, Request, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse

from ..api import InputError
from ..errors import BadItem, EmotionMXError
from ..serve import security
from ..serve.http import BodyLimit, install_error_handlers, scrub
from .protocol import MAX_UPLOAD_MB, Limits, ProtocolError, RateLimit, StreamGuard, parse_control, parse_start

log = logging.getLogger(__name__)

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
MAX_PENDING_UPLOADS = 8                  # uploads waiting for their stream; more: the oldest goes
MAX_BACKLOG_WINDOWS = 2                  # further behind than this: older windows are skipped
PAGE_FRAME_SECONDS = 0.2                 # the page sends 5 frames/s: each frame's display time
START_TIMEOUT = 30.0                     # seconds a new connection has to send its start message
CLOSE_POLICY = 1008                      # WebSocket close code: policy violation
CLOSE_BUSY = 1013                        # try again later

router = APIRouter()


class LiveState:
    """The model and stream settings shared by the page's streams."""

    def __init__(self, model_dir, latency_budget=0.5, window=2.0, hop=0.5, tolerance=0.1, ema=0.5,
                 detect_every=5, limits=None, max_upload_mb=MAX_UPLOAD_MB):
        from ..inference.predict import Predictor
        self.predictor = _Locked(Predictor(model_dir, batch_size=1))
        self.model_dir = model_dir
        # detect_every: face detection on every 5th frame, a tracker between (as `emotion-mx stream`)
        self.settings = dict(latency_budget=latency_budget, window=window, hop=hop, tolerance=tolerance, ema=ema,
                             detect_every=detect_every)
        self.limits = limits or Limits()
        self.max_upload_bytes = int(max_upload_mb * 1024 * 1024)
        self.uploads = tempfile.mkdtemp(prefix="emotion_mx_live_")
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.uploads, True)   # at exit, too
        self.files = collections.OrderedDict()     # upload id → path, oldest first
        self.streams = 0                           # streams running now
        self.lock = threading.Lock()

    def runner(self):
        from ..inference.stream import StreamRunner
        return StreamRunner(self.predictor, **self.settings)

    def add_upload(self, fid, path):
        with self.lock:
            self.files[fid] = path
            while len(self.files) > MAX_PENDING_UPLOADS:
                _, old = self.files.popitem(last=False)
                _remove(old)

    def take_upload(self, fid):
        with self.lock:
            return self.files.pop(fid, None)

    def close(self):
        self._cleanup()


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class _Locked:
    """A Predictor whose model calls run one at a time on one long-lived thread (one MXNet graph
    shared by all streams).  Not on each stream's own worker thread: MXNet keeps about 5 MB of
    per-thread state that a finished thread never gives back (measured: +4.9 MB resident per
    stream when every stream's thread called the model), so a client opening streams in a loop
    could grow the server without bound."""

    _executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-model")

    def __init__(self, predictor):
        self._p = predictor

    def __getattr__(self, name):
        return getattr(self._p, name)

    def predict_features(self, *args, **kw):
        return self._executor.submit(self._p.predict_features, *args, **kw).result()


def configure(app, model_dir, **settings):
    """Load the model for the live page of ``app`` (``settings``: latency_budget, window, hop...,
    ``limits`` (:class:`~.protocol.Limits`), ``max_upload_mb``)."""
    app.state.live = LiveState(model_dir, **settings)
    return app.state.live


def create_app(model_dir, api_key=None, cors_origins=(), **settings):
    """A FastAPI app with only the live router at ``/live`` (``emotion-mx live``); ``api_key``:
    required from every client (:mod:`emotion_mx.serve.security`), ``cors_origins``: browser
    origins allowed besides the page's own."""
    from fastapi.responses import RedirectResponse
    app = FastAPI(title="emotion_mx live")
    state = configure(app, model_dir, **settings)
    app.add_middleware(BodyLimit, limit=state.max_upload_bytes + 65536)     # the multipart framing
    security.install(app, api_key, cors_origins)
    install_error_handlers(app)
    app.include_router(router, prefix="/live")
    app.add_api_route("/", lambda: RedirectResponse("/live/"), include_in_schema=False)
    return app


def _state(app):
    state = getattr(app.state, "live", None)
    if state is None:
        model_dir = getattr(app.state, "live_model_dir", None) or os.environ.get("EMOTION_MX_LIVE_MODEL")
        if not model_dir:
            raise HTTPException(503, "the live page has no model: start it with `emotion-mx live --model DIR` "
                                     "or set EMOTION_MX_LIVE_MODEL")
        state = configure(app, model_dir)
    return state


@router.get("/", include_in_schema=False)
def page():
    return FileResponse(os.path.join(STATIC, "index.html"), media_type="text/html")


@router.get("/static/{name}", include_in_schema=False)
def static(name: str):
    path = os.path.join(STATIC, os.path.basename(name))
    if not os.path.isfile(path):
        raise HTTPException(404, f"no such file: {os.path.basename(name)}")
    return FileResponse(path)


@router.get("/info")
def info(request: Request):
    st = _state(request.app)
    p = st.predictor
    from ..inference.quality import LEVELS
    lim = st.limits
    return {"labels": list(p.labels), "modalities": list(p.modalities), "model": os.path.basename(st.model_dir.rstrip("/")),
            "sample_rate": p.config.audio.sample_rate, **st.settings,
            "levels": [lv.name for lv in LEVELS],
            "auth": bool(getattr(request.app.state, "api_key", None)),
            "limits": {"max_upload_bytes": st.max_upload_bytes, "max_ahead": lim.max_ahead,
                       "max_chunk_seconds": lim.max_chunk_seconds, "max_frame_pixels": lim.max_frame_pixels,
                       "max_transcript_chars": lim.max_transcript_chars}}


@router.post("/upload")
async def upload(request: Request, file: UploadFile = File(...)):
    from ..serve.media import ACCEPTED, media_type
    st = _state(request.app)
    head = await file.read(64)
    try:
        ext = media_type("audio", head, file.filename)        # audio and video containers
    except InputError as e:
        raise InputError("file", e.reason) from None
    fid = uuid.uuid4().hex
    path = os.path.join(st.uploads, fid + ext)
    size = len(head)
    try:
        with open(path, "wb") as f:
            f.write(head)
            while chunk := await file.read(1 << 20):
                size += len(chunk)
                if size > st.max_upload_bytes:
                    raise InputError("file", f"larger than {st.max_upload_bytes >> 20} MiB, the live page's limit")
                f.write(chunk)
        await asyncio.to_thread(_check_upload, path, st.predictor)
    except BaseException:
        _remove(path)
        raise
    st.add_upload(fid, path)
    return JSONResponse({"id": fid, "bytes": size, "accepted": " ".join(ACCEPTED["audio"])})


def _check_upload(path, predictor):
    """Decode the start of an upload: its first video frame (a model with video) or first
    second of audio (a model with audio); InputError ``file`` when neither decodes."""
    from ..features.face import MAX_IMAGE_PIXELS
    from ..features.frames import iter_frames, probe
    from ..inference.sources import AudioChunk, AudioPipe
    mods, reasons = predictor.modalities, []
    try:
        info = probe(path)
    except BadItem as e:
        info, reasons = None, [str(e)]
    if info is not None and info.video and "video" in mods:
        if info.width * info.height > MAX_IMAGE_PIXELS:
            raise InputError("file", f"video frames of {info.width}x{info.height} pixels, over the limit of "
                                     f"{MAX_IMAGE_PIXELS // 10 ** 6} megapixels; downscale it")
        try:
            frames = iter_frames(path)
            first = next(iter(frames), None)
            frames.close()
            if first is not None:
                return
            reasons.append("no decodable video frame")
        except BadItem as e:
            reasons.append(str(e))
    if "audio" in mods:
        pipe = AudioPipe(path, predictor.config.audio.sample_rate, chunk_seconds=1.0)
        chunks = iter(pipe)
        first = next(chunks)
        chunks.close()
        if isinstance(first, AudioChunk) and len(first.samples) and np.all(np.isfinite(first.samples)):
            return
        reasons.append(f"no decodable audio ({pipe.error or 'empty'})")
    reason = "; ".join(reasons) or f"nothing the model takes ({', '.join(mods)})"
    raise InputError("file", f"cannot decode it as audio or video: {reason}")


def _file_sources(predictor, path):
    """Sources of an uploaded file: its video (if any) and audio track."""
    from ..features.frames import probe
    from ..inference.stream import open_sources
    try:
        has_video = probe(path).video
    except BadItem:
        has_video = False                       # e.g. a WAV PyAV cannot open: try it as audio
    if has_video:
        return open_sources(predictor.modalities, predictor.config.audio.sample_rate, video=path)[0]
    return open_sources(predictor.modalities, predictor.config.audio.sample_rate, audio=path)[0]


def _event(kind, t, payload, sample_rate):
    """A validated binary message → AudioChunk or Frame; ProtocolError if a frame does not decode."""
    import cv2
    from ..inference.sources import AudioChunk, Frame
    if kind == "audio":
        return AudioChunk(t, np.frombuffer(payload, dtype="<f4").astype(np.float32), sample_rate)
    image = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise ProtocolError("payload", f"the frame at t={t:.3f} s does not decode (corrupt image)")
    return Frame(t, image, PAGE_FRAME_SECONDS)


async def _refuse(ws, error, code=CLOSE_POLICY):
    """One error message, then close (before the stream has started)."""
    try:
        await ws.send_text(json.dumps(error.to_json()))
        await ws.close(code=code)
    except (RuntimeError, WebSocketDisconnect):
        pass                                    # the client went first


async def _first_message(ws):
    try:
        msg = await asyncio.wait_for(ws.receive(), timeout=START_TIMEOUT)
    except asyncio.TimeoutError:
        raise ProtocolError("message", f"no start message within {START_TIMEOUT:g} s") from None
    if msg["type"] == "websocket.disconnect":
        return None
    return msg.get("text") if msg.get("text") is not None else msg.get("bytes")


class _Queue:
    """The receiver → worker queue, counting the decoded bytes it holds."""

    def __init__(self):
        self.q, self.bytes, self.lock = queue.Queue(), 0, threading.Lock()

    def put(self, item, nbytes=0):
        with self.lock:
            self.bytes += nbytes
        self.q.put((item, nbytes))

    def get(self, block=True):
        item, nbytes = self.q.get(block)
        with self.lock:
            self.bytes -= nbytes
        return item


@router.websocket("/ws")
async def stream(ws: WebSocket):
    if not security.origin_allowed(ws.headers, getattr(ws.app.state, "cors_origins", ())):
        await ws.close(code=CLOSE_POLICY)       # before accept: the browser sees a refused handshake
        return
    await ws.accept()
    try:
        st = _state(ws.app)
    except HTTPException as e:
        return await _refuse(ws, ProtocolError("model", e.detail), code=1011)
    api_key = getattr(ws.app.state, "api_key", None)
    header_ok = api_key is None or security.key_matches(security.header_key(ws.headers), api_key)
    lim, mods = st.limits, st.predictor.modalities
    with st.lock:
        busy = st.streams >= lim.max_streams
        st.streams += 0 if busy else 1
    if busy:
        return await _refuse(ws, ProtocolError("stream", f"{lim.max_streams} streams are running, the server's "
                                                         "limit; try again later"), code=CLOSE_BUSY)
    try:
        try:
            first = await _first_message(ws)
            if first is None:
                return
            start = parse_start(first, lim, mods)
            if not header_ok and not security.key_matches(start["key"], api_key):
                raise ProtocolError("key", "missing or wrong API key: send it in the start message's \"key\" "
                                           "(or the Authorization: Bearer / X-API-Key header)")
            path = None
            if "file" in start:
                path = st.take_upload(start["file"])
                if path is None:
                    raise ProtocolError("file", "unknown upload id (upload the file first; an id streams once)")
        except ProtocolError as e:
            return await _refuse(ws, e)
        await _run_stream(ws, st, start, path)
    finally:
        with st.lock:
            st.streams -= 1


async def _run_stream(ws, st, start, path):
    lim = st.limits
    loop = asyncio.get_running_loop()
    out = asyncio.Queue()
    events = _Queue()

    def emit(msg):
        loop.call_soon_threadsafe(out.put_nowait, msg)

    runner = st.runner()
    if start.get("text"):
        from ..inference.subtitles import Cue
        runner.cues = [Cue(0.0, math.inf, start["text"])]
    kinds = [k for k in ("audio", "video") if start.get(k)]
    guard = StreamGuard(lim, kinds, st.predictor.config.audio.sample_rate)
    rate = RateLimit(lim.max_messages_per_s, lim.burst)
    worker = threading.Thread(target=_work, args=(runner, st, start, path, events, emit), daemon=True)
    worker.start()

    async def send():
        while True:
            msg = await out.get()
            if msg is None:
                return
            await ws.send_text(json.dumps(msg))

    sender = asyncio.create_task(send())
    errors, receiving = 0, None
    try:
        while True:                                 # until the client leaves or the stream ends
            receiving = receiving or asyncio.ensure_future(ws.receive())
            await asyncio.wait({receiving, sender}, return_when=asyncio.FIRST_COMPLETED)
            if not receiving.done():
                break
            msg, receiving = receiving.result(), None
            if msg["type"] == "websocket.disconnect":
                break
            try:
                if not rate.take():
                    raise ProtocolError("rate", f"more than {lim.max_messages_per_s:g} messages/s (bursts of "
                                                f"{lim.burst}); message dropped")
                if msg.get("bytes") is not None:
                    if path is not None:
                        raise ProtocolError("message", "a file stream takes no media messages; send "
                                                       "{\"type\": \"stop\"} to end it")
                    kind, t, payload, nbytes = guard.check(msg["bytes"])
                    while events.bytes and events.bytes + nbytes > lim.max_queue_bytes and worker.is_alive():
                        await asyncio.sleep(0.01)           # the model is behind: read no further
                    events.put((kind, t, payload), nbytes)
                else:
                    action, text = parse_control(msg.get("text") or "", lim, st.predictor.modalities)
                    if action == "text" and path is not None:
                        raise ProtocolError("type", "a file stream takes its transcript in the start message")
                    if action == "stop" and path is not None:
                        runner.stopped = True
                    events.put(None if action == "stop" else ("text", guard.clock, text))
            except ProtocolError as e:
                errors += 1
                out.put_nowait(e.to_json())
                if errors >= lim.max_errors:
                    runner.stopped = True
                    events.put(None)
                    await _close(ws, sender, CLOSE_POLICY, f"{errors} refused messages")
                    return
    except WebSocketDisconnect:
        pass
    finally:
        if receiving is not None:
            receiving.cancel()
        events.put(None)
        runner.stopped = True
    await _close(ws, sender)


async def _close(ws, sender, code=1000, reason=None):
    try:
        await asyncio.wait_for(asyncio.shield(sender), timeout=30)
    except Exception as e:              # a client gone before its answers: nothing to report
        log.debug("live stream: answers not delivered (%s)", type(e).__name__)
        sender.cancel()
    try:
        await ws.close(code=code, reason=reason)
    except (RuntimeError, WebSocketDisconnect, OSError):
        pass                                # the client went first


def _work(runner, st, start, path, events, emit):
    """The stream's worker thread: events → runner → messages (None ends the messages)."""
    try:
        if path is not None:
            try:
                rows = runner.run(_file_sources(st.predictor, path), realtime=start["realtime"])
                for row in rows:
                    emit({"type": "window", **row})
                    if getattr(runner, "stopped", False):
                        break
            finally:
                _remove(path)
        else:
            _work_live(runner, st, start, events, emit)
        emit({"type": "summary", **runner.summary()})
    except EmotionMXError as e:
        emit({"type": "error", "field": "stream", "error": scrub(str(e))})
    except Exception:  # a bug must not hang the page: log it, tell the client without the details
        log.exception("live stream failed")
        emit({"type": "error", "field": "stream", "error": "internal error in the stream (logged on the server)"})
    finally:
        emit(None)


def _work_live(runner, st, start, events, emit):
    from ..inference.sources import End
    from ..inference.subtitles import Cue
    kinds = [k for k in ("audio", "video") if start[k]]
    sr = st.predictor.config.audio.sample_rate
    runner.start(kinds)
    runner.warmup()
    last = {k: 0.0 for k in kinds}
    backlog = MAX_BACKLOG_WINDOWS if start["catch_up"] else None
    done = False
    while not done:
        batch = [events.get()]                 # everything that arrived meanwhile
        while True:
            try:
                batch.append(events.get(block=False))
            except queue.Empty:
                break
        done = None in batch
        if done:
            batch = batch[:batch.index(None)]
        evs = []
        for item in batch:
            if item[0] == "text":              # a new transcript from the stream's current time on
                _, t, text = item
                if runner.cues:
                    c = runner.cues[-1]
                    runner.cues[-1] = Cue(c.start, max(c.start, t), c.text)
                if text.strip():
                    runner.cues.append(Cue(t, math.inf, text))
                continue
            try:
                evs.append(_event(*item, sr))
            except ProtocolError as e:
                emit(e.to_json())
        for ev in evs:
            last[ev.kind] = max(last[ev.kind], getattr(ev, "end", ev.t))
        for row in runner.push_all(evs, max_windows=backlog):
            emit({"type": "window", **row})
    for k in kinds:
        for row in runner.push(End(k, last[k])):
            emit({"type": "window", **row})
    for row in runner.finish():
        emit({"type": "window", **row})
