"""``python -m emotion_mx.live --model DIR [--host --port]``."""
from emotion_mx.cli import run_cli
from emotion_mx.live.command import live

if __name__ == "__main__":
    run_cli(live)
