"""The same service as a Ray Serve deployment (``emotion-mx serve --ray --replicas N``).

Each replica is a Ray actor that loads and warms up its own models (an :class:`.engine.Engine`)
and answers through the FastAPI application of :mod:`.app`, exactly as a uvicorn worker does;
Ray's HTTP proxy spreads requests over the replicas.  The admission limit (``--max-queue``) is enforced per replica by the app and
also given to Ray as ``max_ongoing_requests``.
"""
import logging
import time

from ..errors import EmotionMXError

log = logging.getLogger(__name__)

APP_NAME = "emotion_mx"


def _serve():
    try:
        from ray import serve
    except ImportError as e:
        raise EmotionMXError(f"--ray needs Ray Serve ({e}): pip install 'emotion_mx[serve]' 'ray[serve]==2.10.0'") from None
    return serve


class Replica:
    """One replica: its own loaded (and warmed-up) engine and the FastAPI app over it.

    The app is built inside the replica and requests are handed to it as ASGI calls, rather
    than with ``serve.ingress(app)``: Ray 2.10 pickles an ingress app to ship it, and FastAPI
    >= 0.1xx apps hold thread locks and cannot be pickled."""

    def __init__(self, settings_json):
        from .app import create_app
        from .engine import Engine
        from .settings import ServeSettings
        settings = ServeSettings.from_json(settings_json)
        self.engine = Engine(settings)
        self.engine.load()                     # the replica counts as started once warmed up
        self.app = create_app(settings, engine=self.engine)

    async def __call__(self, request):
        from starlette.responses import Response
        body = await request.body()
        sent = []

        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message):
            sent.append(message)

        await self.app(dict(request.scope), receive, send)
        start = next(m for m in sent if m["type"] == "http.response.start")
        content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in start.get("headers", [])
                   if k.lower() != b"content-length"}
        return Response(content, status_code=start["status"], headers=headers)


def build(settings, replicas=1):
    """The bound Ray Serve application for ``settings`` with ``replicas`` replicas."""
    serve = _serve()
    deployment = serve.deployment(Replica, name="EmotionService", num_replicas=int(replicas),
                                  max_ongoing_requests=settings.max_queue + 1,
                                  ray_actor_options={"num_cpus": 0})
    return deployment.bind(settings.to_json())


def start(settings, replicas=1, address=None):
    """Start Ray (or join ``address``) and Ray Serve's HTTP proxy on ``settings.host:port``,
    deploy, and return once every replica is running."""
    import ray
    serve = _serve()
    if not ray.is_initialized():
        # "local": a new cluster of our own, never one another program left running here
        ray.init(address=address or "local", include_dashboard=False, logging_level=logging.WARNING,
                 configure_logging=False)
    serve.start(http_options={"host": settings.host, "port": settings.port})
    serve.run(build(settings, replicas), name=APP_NAME, route_prefix="/")
    log.info("Ray Serve: %d replica(s) of %s at http://%s:%d", replicas, settings.model, settings.host, settings.port)


def run_ray(settings, replicas=1, address=None):
    """``emotion-mx serve --ray``: deploy and block until interrupted, then shut down."""
    import signal
    import ray
    serve = _serve()

    def stop(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)       # terminate = Ctrl-C: Ray and its workers are shut down
    start(settings, replicas=replicas, address=address)
    print(f"serving on http://{settings.host}:{settings.port} with Ray Serve ({replicas} replica(s)); Ctrl-C stops",
          flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        ray.shutdown()
