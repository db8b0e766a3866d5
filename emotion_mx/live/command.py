"""``emotion-mx live [--model DIR|zoo:NAME] [--host 127.0.0.1] [--port 8765] [--latency-budget 0.5]``
(no ``--model``: the multimodal zoo model)."""
import click

from ..optional import require
from ..serve.security import KEY_ENV, WS_MAX_BYTES, check_bind
from .protocol import MAX_UPLOAD_MB, Limits


@click.command("live")
@click.option("--model", "model_dir", default="zoo:multimodal", show_default=True, type=click.Path(),
              help="Exported model folder (fp32 or INT8), or zoo:NAME (a ready model: emotion-mx zoo list).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=int, help="Port.")
@click.option("--latency-budget", default=0.5, show_default=True, type=click.FloatRange(min=0.0, min_open=True),
              help="Seconds per window; the stream steps its quality down when over it.")
@click.option("--window", default=2.0, show_default=True, type=click.FloatRange(min=0.05), help="Window length, seconds.")
@click.option("--hop", default=0.5, show_default=True, type=click.FloatRange(min=0.01), help="Window step, seconds.")
@click.option("--api-key", envvar=KEY_ENV, show_envvar=True, default=None,
              help="The page, its uploads and WebSocket need this key (the page asks for it once). Required off loopback.")
@click.option("--no-auth", is_flag=True, help="Serve without an API key on a non-loopback --host.")
@click.option("--cors-origin", "cors_origins", multiple=True, metavar="ORIGIN",
              help="Allow browser pages of this origin besides the page's own (repeatable) [none].")
@click.option("--max-upload-mb", default=MAX_UPLOAD_MB, show_default=True, type=click.FloatRange(min=0.001),
              help="Largest file the page may upload.")
@click.option("--max-streams", default=Limits.max_streams, show_default=True, type=click.IntRange(1),
              help="Streams running at once; more are refused until one ends.")
def live(model_dir, host, port, latency_budget, window, hop, api_key, no_auth, cors_origins, max_upload_mb,
         max_streams):
    """Serve the live page: open http://HOST:PORT/live/ and allow camera and microphone."""
    api_key = check_bind(host, api_key, no_auth)     # one line, before the model loads
    uvicorn = require("uvicorn", "serve", "the live page")
    require("fastapi", "serve", "the live page")
    from emotion_mx.api import resolve_model
    from emotion_mx.live.server import create_app
    app = create_app(resolve_model(model_dir), api_key=api_key, cors_origins=cors_origins, latency_budget=latency_budget,
                     window=window, hop=hop, limits=Limits(max_streams=max_streams), max_upload_mb=max_upload_mb)
    click.echo(f"live page: http://{host}:{port}/live/" + (" (API key required)" if api_key else ""), err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", ws_max_size=WS_MAX_BYTES)
