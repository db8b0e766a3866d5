"""``python -m emotion_mx.serve --model DIR``: the same command as ``emotion-mx serve``."""
from ..cli import run_cli
from .command import serve

if __name__ == "__main__":
    run_cli(serve)
