"""``emotion-mx live --model DIR [--host 127.0.0.1] [--port 8765] [--latency-budget 0.5]``."""
import click

from ..optional import require


@click.command("live")
@click.option("--model", "model_dir", required=True, type=click.Path(), help="Exported model folder (fp32 or INT8).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=int, help="Port.")
@click.option("--latency-budget", default=0.5, show_default=True, type=click.FloatRange(min=0.0, min_open=True),
              help="Seconds per window; the stream steps its quality down when over it.")
@click.option("--window", default=2.0, show_default=True, type=click.FloatRange(min=0.05), help="Window length, seconds.")
@click.option("--hop", default=0.5, show_default=True, type=click.FloatRange(min=0.01), help="Window step, seconds.")
def live(model_dir, host, port, latency_budget, window, hop):
    """Serve the live page: open http://HOST:PORT/live/ and allow camera and microphone."""
    uvicorn = require("uvicorn", "serve", "the live page")
    require("fastapi", "serve", "the live page")
    from emotion_mx.live.server import create_app
    app = create_app(model_dir, latency_budget=latency_budget, window=window, hop=hop)
    click.echo(f"live page: http://{host}:{port}/live/", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
