"""FastAPI router of the live page (see :mod:`emotion_mx.live`).

Routes (relative to the mount point, ``/live``):

* ``GET /`` — the page; ``GET /static/{file}`` — its script and style (no build step, offline);
* ``GET /info`` — labels, modalities, window settings and the latency budget;
* ``POST /upload`` — a media file (multipart ``file``) → ``{"id": ...}`` for a file stream;
* ``WS /ws`` — one stream.  The client's first message is JSON
  ``{"type": "start", "audio": bool, "video": bool}`` (live media) or
  ``{"type": "start", "file": id}`` (an uploaded file, streamed at wall-clock pace through the
  same :class:`~emotion_mx.inference.stream.StreamRunner` the CLI uses).  Live media then come
  as binary messages: one byte ``a``/``v``, a little-endian float64 timestamp (seconds since
  the stream's start), then 16 kHz mono float32 PCM (``a``) or a JPEG (``v``).  ``{"type":
  "stop"}`` ends the stream.  The server answers ``{"type": "window", ...row}`` per window
  (the CLI's JSON line) and ``{"type": "summary", ...}`` at the end; ``{"type": "error",
  "error": ...}`` for input it cannot use.

Each stream's events are processed on a worker thread (the model runs under one lock shared by
all streams), so a slow machine shows up as lag, and the runner steps its quality down.  When
the worker finds more than ``MAX_BACKLOG_WINDOWS`` windows ready at once, it processes only the
newest (the rest are counted as ``skipped_windows``): a live view catches up rather than
falling further behind (``"catch_up": false`` in the start message processes every window).
"""
import asyncio
import json
import logging
import os
import queue
import struct
import tempfile
import threading
import uuid

import numpy as np
from fastapi import APIRouter, FastAPI, File, HTTPException, Request, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse

from ..errors import EmotionMXError

log = logging.getLogger(__name__)

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
MAX_UPLOAD_BYTES = 200 * 1024 * 1024
HEADER = struct.Struct("<cd")            # kind byte, float64 timestamp
MAX_BACKLOG_WINDOWS = 2                  # further behind than this: older windows are skipped
PAGE_FRAME_SECONDS = 0.2                 # the page sends 5 frames/s: each frame's display time

router = APIRouter()


class LiveState:
    """The model and stream settings shared by the page's streams."""

    def __init__(self, model_dir, latency_budget=0.5, window=2.0, hop=0.5, tolerance=0.1, ema=0.5,
                 detect_every=5):
        from ..inference.predict import Predictor
        self.predictor = _Locked(Predictor(model_dir, batch_size=1))
        self.model_dir = model_dir
        # detect_every: face detection on every 5th frame, a tracker between (as `emotion-mx stream`)
        self.settings = dict(latency_budget=latency_budget, window=window, hop=hop, tolerance=tolerance, ema=ema,
                             detect_every=detect_every)
        self.uploads = tempfile.mkdtemp(prefix="emotion_mx_live_")
        self.files = {}

    def runner(self):
        from ..inference.stream import StreamRunner
        return StreamRunner(self.predictor, **self.settings)


class _Locked:
    """A Predictor whose model calls are serialised (one MXNet graph shared by all streams)."""

    _lock = threading.Lock()

    def __init__(self, predictor):
        self._p = predictor

    def __getattr__(self, name):
        return getattr(self._p, name)

    def predict_features(self, *args, **kw):
        with self._lock:
            return self._p.predict_features(*args, **kw)


def configure(app, model_dir, **settings):
    """Load the model for the live page of ``app`` (``settings``: latency_budget, window, hop...)."""
    app.state.live = LiveState(model_dir, **settings)
    return app.state.live


def create_app(model_dir, **settings):
    """A FastAPI app with only the live router at ``/live`` (``emotion-mx live``)."""
    from fastapi.responses import RedirectResponse
    app = FastAPI(title="emotion_mx live")
    configure(app, model_dir, **settings)
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
        raise HTTPException(404, f"no such file: {name}")
    return FileResponse(path)


@router.get("/info")
def info(request: Request):
    st = _state(request.app)
    p = st.predictor
    from ..inference.quality import LEVELS
    return {"labels": list(p.labels), "modalities": list(p.modalities), "model": os.path.basename(st.model_dir.rstrip("/")),
            "sample_rate": p.config.audio.sample_rate, **st.settings,
            "levels": [lv.name for lv in LEVELS]}


@router.post("/upload")
async def upload(request: Request, file: UploadFile = File(...)):
    st = _state(request.app)
    ext = os.path.splitext(file.filename or "")[1].lower()[:8]
    fid = uuid.uuid4().hex
    path = os.path.join(st.uploads, fid + ext)
    size = 0
    with open(path, "wb") as f:
        while chunk := await file.read(1 << 20):
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES:
                f.close()
                os.unlink(path)
                raise HTTPException(413, f"file larger than {MAX_UPLOAD_BYTES >> 20} MiB")
            f.write(chunk)
    st.files[fid] = path
    return JSONResponse({"id": fid, "bytes": size})


def _file_sources(predictor, path):
    """Sources of an uploaded file: its video (if any) and audio track."""
    from ..errors import BadItem
    from ..features.frames import probe
    from ..inference.stream import open_sources
    try:
        has_video = probe(path).video
    except BadItem:
        has_video = False                       # e.g. a WAV PyAV cannot open: try it as audio
    if has_video:
        return open_sources(predictor.modalities, predictor.config.audio.sample_rate, video=path)[0]
    return open_sources(predictor.modalities, predictor.config.audio.sample_rate, audio=path)[0]


def _decode(message, sample_rate):
    """A binary client message → a Frame or AudioChunk (None if unusable)."""
    import cv2
    from ..inference.sources import AudioChunk, Frame
    if len(message) <= HEADER.size:
        return None
    kind, t = HEADER.unpack_from(message)
    payload = message[HEADER.size:]
    if not np.isfinite(t) or t < 0:
        return None
    if kind == b"a":
        samples = np.frombuffer(payload[: len(payload) // 4 * 4], dtype="<f4").astype(np.float32)
        return AudioChunk(t, samples, sample_rate) if len(samples) else None
    if kind == b"v":
        image = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
        return None if image is None else Frame(t, image, PAGE_FRAME_SECONDS)
    return None


@router.websocket("/ws")
async def stream(ws: WebSocket):
    await ws.accept()
    try:
        st = _state(ws.app)
    except HTTPException as e:
        await ws.send_json({"type": "error", "error": e.detail})
        await ws.close()
        return
    loop = asyncio.get_running_loop()
    out = asyncio.Queue()
    events = queue.Queue()

    def emit(msg):
        loop.call_soon_threadsafe(out.put_nowait, msg)

    try:
        start = json.loads(await ws.receive_text())
    except (WebSocketDisconnect, ValueError, KeyError):
        await ws.close()
        return
    runner = st.runner()
    worker = threading.Thread(target=_work, args=(runner, st, start, events, emit), daemon=True)
    worker.start()

    async def send():
        while True:
            msg = await out.get()
            if msg is None:
                return
            await ws.send_text(json.dumps(msg))

    sender = asyncio.create_task(send())
    try:
        sr = st.predictor.config.audio.sample_rate
        while not sender.done():
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                break
            if msg.get("bytes") is not None and "file" not in start:
                ev = _decode(msg["bytes"], sr)
                if ev is not None:
                    events.put(ev)
            elif msg.get("text") and json.loads(msg["text"]).get("type") == "stop":
                events.put(None)
    except WebSocketDisconnect:
        pass
    finally:
        events.put(None)
        runner.stopped = True
        try:
            await asyncio.wait_for(sender, timeout=30)
        except (asyncio.TimeoutError, WebSocketDisconnect, RuntimeError):
            sender.cancel()
        try:
            await ws.close()
        except (RuntimeError, WebSocketDisconnect):
            pass                                # the client went first


def _work(runner, st, start, events, emit):
    """The stream's worker thread: events → runner → messages (None ends the messages)."""
    try:
        if "file" in start:
            path = st.files.pop(str(start["file"]), None)      # one stream per upload
            if path is None:
                raise EmotionMXError("unknown upload id (upload the file first)")
            try:
                rows = runner.run(_file_sources(st.predictor, path), realtime=bool(start.get("realtime", True)))
                for row in rows:
                    emit({"type": "window", **row})
                    if getattr(runner, "stopped", False):
                        break
            finally:
                os.unlink(path)
        else:
            kinds = [k for k in ("audio", "video") if start.get(k)]
            if not kinds:
                raise EmotionMXError("the stream carries neither audio nor video")
            runner.start(kinds)
            runner.warmup()
            from ..inference.sources import End
            last = {k: 0.0 for k in kinds}
            backlog = MAX_BACKLOG_WINDOWS if start.get("catch_up", True) else None
            done = False
            while not done:
                batch = [events.get()]                 # everything that arrived meanwhile
                while True:
                    try:
                        batch.append(events.get_nowait())
                    except queue.Empty:
                        break
                done = None in batch
                batch = [ev for ev in batch if ev is not None]
                for ev in batch:
                    last[ev.kind] = max(last[ev.kind], getattr(ev, "end", ev.t))
                for row in runner.push_all(batch, max_windows=backlog):
                    emit({"type": "window", **row})
            for k in kinds:
                for row in runner.push(End(k, last[k])):
                    emit({"type": "window", **row})
            for row in runner.finish():
                emit({"type": "window", **row})
        emit({"type": "summary", **runner.summary()})
    except EmotionMXError as e:
        emit({"type": "error", "error": str(e)})
    except Exception as e:  # a bug must not hang the page: report it and end the stream
        log.exception("live stream failed")
        emit({"type": "error", "error": f"{type(e).__name__}: {e}"})
    finally:
        emit(None)
