#!/usr/bin/env python
"""`python tools/crossval.py ...` is `emotion-mx crossval ...`: the command lives in emotion_mx/commands/crossval.py."""
from emotion_mx.cli import run_cli
from emotion_mx.commands.crossval import main

if __name__ == "__main__":
    run_cli(main)
