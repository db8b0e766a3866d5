#!/usr/bin/env python
"""`python tools/stream.py ...` is `emotion-mx stream ...`: the command lives in emotion_mx/commands/stream.py."""
from emotion_mx.cli import run_cli
from emotion_mx.commands.stream import main

if __name__ == "__main__":
    run_cli(main)
