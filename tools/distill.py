#!/usr/bin/env python
"""`python tools/distill.py ...` is `emotion-mx distill ...`: the command lives in emotion_mx/commands/distill.py."""
from emotion_mx.cli import run_cli
from emotion_mx.commands.distill import main

if __name__ == "__main__":
    run_cli(main)
