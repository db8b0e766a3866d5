"""The FastAPI application.

    POST /predict         one item: multipart (files + form fields) or JSON (base64 media)
    POST /predict/batch   several items (``audio.0``, ``text.0``... or ``{"items": [...]}``)
    GET  /health          the process is up (always 200, with ``ready`` and ``pid``)
    GET  /ready           200 once the models are loaded and warmed up, else 503
    GET  /model           labels, modalities, input spec and versions of the loaded models
    GET  /metrics         Prometheus metrics of this worker process

Every error is JSON ``{"error": code, "detail": message[, "argument": name]}`` (:mod:`.http`,
also for the framework's own 404/405/422/400): 400 a body that cannot be parsed (multipart
framing, JSON nested too deeply), 401 missing or wrong API key (:mod:`.security`), 413 body
too large, 422 unsupported media, modality or malformed input, 429 too many requests in
progress (``Retry-After``), 503 not ready or model failure, 504 timeout.  No answer shows an
absolute server path.  When ``emotion_mx.live`` (the browser page) is importable its router
is mounted at ``/live``.
"""
import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import time

from . import require

require()

from fastapi import FastAPI, Request                      # noqa: E402
from fastapi.responses import Response                    # noqa: E402
from starlette.exceptions import HTTPException            # noqa: E402

from ..api import InputError                              # noqa: E402
from . import security                                    # noqa: E402
from .engine import Engine                                # noqa: E402
from .http import BadRequest, BodyLimit, error_response, install_error_handlers, parse_json, scrub  # noqa: E402
from .settings import ServeSettings                       # noqa: E402

log = logging.getLogger(__name__)
KNOWN_PATHS = {"/predict", "/predict/batch", "/health", "/ready", "/model", "/metrics", "/docs", "/openapi.json"}


class Metrics:
    """Prometheus metrics in a registry of their own (one per app, so tests can build several)."""

    def __init__(self):
        import prometheus_client as pc
        self.pc = pc
        self.registry = pc.CollectorRegistry()
        self.requests = pc.Counter("emotion_mx_requests", "HTTP requests by endpoint and status",
                                   ["endpoint", "status"], registry=self.registry)
        self.latency = pc.Histogram("emotion_mx_request_seconds", "Latency of prediction requests",
                                    ["endpoint"], registry=self.registry,
                                    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.served = pc.Counter("emotion_mx_served", "Predictions by the model that served them",
                                 ["model"], registry=self.registry)
        self.attempts = pc.Counter("emotion_mx_model_attempts", "Model calls by model and outcome",
                                   ["model", "outcome"], registry=self.registry)
        self.retries = pc.Counter("emotion_mx_retries", "Primary model retries", registry=self.registry)
        self.fallbacks = pc.Counter("emotion_mx_fallbacks", "Requests sent to the fallback model",
                                    registry=self.registry)
        self.inflight = pc.Gauge("emotion_mx_inflight", "Requests in progress", registry=self.registry)

    def count(self, name, **labels):
        metric = getattr(self, name)
        (metric.labels(**labels) if labels else metric).inc()

    def render(self):
        return self.pc.generate_latest(self.registry), self.pc.CONTENT_TYPE_LATEST


def versions():
    import platform
    import numpy
    from .. import __version__
    out = {"emotion_mx": __version__, "python": platform.python_version(), "numpy": numpy.__version__}
    try:
        import mxnet
        out["mxnet"] = mxnet.__version__
    except ImportError:
        pass
    return out


def create_app(settings, engine=None, load=True):
    """The application for ``settings``.  ``engine``: an already loaded :class:`Engine` (Ray
    replicas); otherwise one is created and, with ``load``, loaded in the background at start-up."""
    metrics = Metrics()
    state = {"engine": engine}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if state["engine"] is None:
            state["engine"] = Engine(settings, metrics=metrics)
            if load and settings.workers > 1:
                # Several workers share one socket: a worker (a replacement of a dead one, too)
                # must not accept connections before its models are ready, or it would answer
                # 503 while the others could serve.  uvicorn accepts only after start-up.
                await asyncio.to_thread(state["engine"].load_or_record)
            elif load:
                state["engine"].start_loading()     # one worker: /health answers during loading
        elif state["engine"].metrics is None:
            state["engine"].metrics = metrics
        yield
        state["engine"].close()

    app = FastAPI(title="emotion_mx", version=versions()["emotion_mx"], lifespan=lifespan,
                  docs_url="/docs", redoc_url=None)
    app.add_middleware(BodyLimit, limit=settings.max_request_bytes)
    security.install(app, settings.api_key, settings.cors_origins)     # outside the body limit
    install_error_handlers(app)

    def get_engine():
        if state["engine"] is None:       # before start-up (an app mounted without its lifespan)
            state["engine"] = Engine(settings, metrics=metrics)
            state["engine"].start_loading()
        return state["engine"]

    @app.middleware("http")
    async def _count(request, call_next):
        response = await call_next(request)
        path = request.url.path
        if path not in KNOWN_PATHS and not path.startswith("/live"):
            path = "other"                 # bounded label values, whatever clients request
        metrics.count("requests", endpoint=path, status=str(response.status_code))
        return response

    async def _predict(request: Request, batch: bool):
        eng = get_engine()
        eng.admit()
        metrics.inflight.inc()
        t0 = time.perf_counter()
        tmpdir = tempfile.mkdtemp(prefix="emx-req-")
        try:
            items = await _parse(request, tmpdir, batch, settings.max_batch)
            try:
                results, info = await eng.predict(items, batch=batch)
            except InputError as e:
                if batch and e.argument.startswith("inputs["):     # the JSON batch field is "items"
                    raise InputError("items" + e.argument[len("inputs"):], e.reason) from None
                raise
        finally:
            eng.release()
            metrics.inflight.dec()
            shutil.rmtree(tmpdir, ignore_errors=True)
        metrics.count("served", model=info["served_by"])
        metrics.latency.labels(endpoint=request.url.path).observe(time.perf_counter() - t0)
        slot = eng.primary if info["served_by"] == "primary" else eng.fallback
        extra = dict(info, model=slot.describe()["folder"], precision=slot.rec.precision)
        if batch:
            return dict(extra, results=[_result_json(r) for r in results])
        return dict(_result_json(results[0]), **extra)

    @app.post("/predict")
    async def predict(request: Request):
        return await _predict(request, batch=False)

    @app.post("/predict/batch")
    async def predict_batch(request: Request):
        return await _predict(request, batch=True)

    @app.get("/health")
    async def health():
        eng = get_engine()
        return {"status": "ok", "pid": os.getpid(), "ready": eng.ready, "inflight": eng.inflight}

    @app.get("/ready")
    async def ready():
        eng = get_engine()
        if not eng.ready:
            detail = f"the model could not be loaded: {eng.load_error}" if eng.load_error else "loading"
            return error_response(503, "not_ready", detail, retry_after=None if eng.load_error else 2)
        return {"ready": True, "pid": os.getpid()}

    @app.get("/model")
    async def model():
        eng = get_engine()
        if not eng.ready:
            return error_response(503, "not_ready", eng.load_error or "loading")
        out = {"primary": eng.primary.describe(), "versions": versions(),
               "limits": {"max_request_bytes": settings.max_request_bytes, "max_queue": settings.max_queue,
                          "max_batch": settings.max_batch, "timeout_s": settings.timeout,
                          "retries": settings.retries}}
        out["fallback"] = eng.fallback.describe() if eng.fallback else None
        return scrub(out)                  # folder names, never where the server keeps them

    @app.get("/metrics")
    async def prometheus():
        body, ctype = metrics.render()
        return Response(body, media_type=ctype)

    try:                                   # the browser page, when that module is present
        from ..live import router as live_router
    except ImportError:
        live_router = None
    if live_router is not None:
        app.include_router(live_router, prefix="/live")
        app.state.live_model_dir = settings.model      # the page loads it on first use
    app.state.settings, app.state.metrics = settings, metrics
    app.state.get_engine = get_engine
    return app


async def _parse(request, tmpdir, batch, max_items):
    from . import media
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        body = parse_json(await request.body())
        return media.from_json(body, tmpdir, batch=batch, max_items=max_items)
    if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        try:
            form = await request.form(max_files=max_items * 3 + 3, max_fields=max_items * 8 + 8)
        except HTTPException as e:          # the framework's multipart errors (no boundary...)
            raise BadRequest(f"body: malformed {ctype} body ({str(e.detail).rstrip('.')}); let the client "
                             "library build it (curl -F, httpx files=...)", argument="body") from None
        try:
            return await media.from_form(form, tmpdir, batch=batch, max_items=max_items)
        finally:
            await form.close()
    raise InputError("body", f"unsupported content type '{ctype or 'none'}'; send multipart/form-data "
                     "(files and form fields) or application/json (base64 media)")


def _result_json(r):
    j = r.to_json()
    j.pop("model", None)
    return j


def app_from_env():
    """uvicorn factory (``emotion_mx.serve.app:app_from_env``): settings from the environment."""
    return create_app(ServeSettings.from_env())
