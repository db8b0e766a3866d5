"""``emotion-mx serve`` (and ``python -m emotion_mx.serve``): the REST service on uvicorn, or
on Ray Serve with ``--ray``."""
import os

import click

from ..deploy.ort_runtime import CHOICES as RUNTIME_CHOICES
from .security import KEY_ENV, WS_MAX_BYTES


@click.command("serve")
@click.option("--model", "model_dir", default="zoo:multimodal", show_default=True, type=click.Path(),
              help="Exported model folder (fp32 or INT8), or zoo:NAME (a ready model: emotion-mx zoo list).")
@click.option("--fallback", type=click.Path(), help="Model served when the primary fails or times out (e.g. the INT8 export, or an audio-only model).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (0.0.0.0: every interface).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1), help="uvicorn worker processes; each loads the models (a dead worker is replaced).")
@click.option("--threads", default=None, type=click.IntRange(1),
              help="Intra-op threads per worker (ONNX Runtime sessions, MXNet's OMP pool) [usable cores / --workers].")
@click.option("--ray", "use_ray", is_flag=True, help="Run as a Ray Serve deployment instead of uvicorn workers.")
@click.option("--replicas", default=1, show_default=True, type=click.IntRange(1), help="With --ray: replicas of the deployment.")
@click.option("--ray-address", default=None, help="With --ray: an existing cluster (e.g. auto) [a local one].")
@click.option("--timeout", default=30.0, show_default=True, type=click.FloatRange(min=0.001), help="Seconds per model attempt; then the fallback (or 504).")
@click.option("--retries", default=1, show_default=True, type=click.IntRange(0, 5), help="Extra primary attempts after a failure.")
@click.option("--max-queue", default=16, show_default=True, type=click.IntRange(1), help="Requests in progress per worker; more get 429 with Retry-After.")
@click.option("--max-request-mb", default=20.0, show_default=True, type=click.FloatRange(min=0.001), help="Largest request body; larger get 413.")
@click.option("--max-batch", default=32, show_default=True, type=click.IntRange(1), help="Items per /predict/batch request.")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1), help="Rows per forward pass of a batch.")
@click.option("--no-warmup", is_flag=True, help="Skip the warm-up prediction at start-up.")
@click.option("--runtime", type=click.Choice(RUNTIME_CHOICES), default="auto", show_default=True,
              help="auto: the faster one measured for each model folder (runtime.json); GET /model says which.")
@click.option("--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--api-key", envvar=KEY_ENV, show_envvar=True, default=None,
              help="Clients must send 'Authorization: Bearer KEY' or 'X-API-Key: KEY' (prefer the environment "
                   "variable: a command line is visible to other users). Required off loopback.")
@click.option("--no-auth", is_flag=True, help="Serve without an API key on a non-loopback --host (anyone who can "
                                               "reach the port may use the service).")
@click.option("--cors-origin", "cors_origins", multiple=True, metavar="ORIGIN",
              help="Allow browser pages of this origin (e.g. https://app.example.com; repeatable) [CORS closed].")
def serve(model_dir, fallback, host, port, workers, threads, use_ray, replicas, ray_address, timeout, retries, max_queue,
          max_request_mb, max_batch, batch_size, no_warmup, runtime, log_level, api_key, no_auth, cors_origins):
    """Serve an exported model over HTTP: POST /predict, /predict/batch; GET /health, /ready,
    /model, /metrics.  Fault injection for tests: EMOTION_MX_SERVE_FAULTS (see docs/serving.md)."""
    from . import require
    from ..api import resolve_model
    from ..artifacts import read_sidecar
    from .security import check_bind
    from .settings import ENV, ServeSettings
    api_key = check_bind(host, api_key, no_auth)     # before anything loads: one line if refused
    require()
    model_dir, fallback = (resolve_model(d) if d else d for d in (model_dir, fallback))   # zoo: assembled once
    for d in filter(None, (model_dir, fallback)):
        read_sidecar(d)                  # a wrong folder fails here, in one line, not in a worker
    settings = ServeSettings(model=os.path.abspath(model_dir), fallback=os.path.abspath(fallback) if fallback else None,
                             host=host, port=port, workers=workers, threads=threads, timeout=timeout, retries=retries,
                             max_queue=max_queue, max_request_bytes=int(max_request_mb * 1e6),
                             max_batch=max_batch, batch_size=batch_size, warmup=not no_warmup, runtime=runtime,
                             api_key=api_key, cors_origins=tuple(cors_origins))
    if use_ray:
        if workers != 1:
            raise click.UsageError("--workers is for uvicorn; with --ray scale with --replicas")
        from .ray_app import run_ray
        return run_ray(settings, replicas=replicas, address=ray_address)
    if replicas != 1:
        raise click.UsageError("--replicas goes with --ray (uvicorn scales with --workers)")
    import uvicorn
    os.environ[ENV] = settings.to_json()
    # every worker inherits these before it imports MXNet / ONNX Runtime: cores / workers threads each
    os.environ.update(settings.worker_env())
    uvicorn.run("emotion_mx.serve.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level=log_level, timeout_graceful_shutdown=5, ws_max_size=WS_MAX_BYTES)
