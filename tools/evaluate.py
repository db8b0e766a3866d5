#!/usr/bin/env python
"""`python tools/evaluate.py ...` is `emotion-mx evaluate ...`: the command lives in emotion_mx/commands/evaluate.py."""
from emotion_mx.cli import run_cli
from emotion_mx.commands.evaluate import main

if __name__ == "__main__":
    run_cli(main)
