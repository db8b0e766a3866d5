#!/usr/bin/env python
"""`python tools/quantize.py ...` is `emotion-mx quantize ...`: the command lives in emotion_mx/commands/quantize.py."""
from emotion_mx.cli import run_cli
from emotion_mx.commands.quantize import main

if __name__ == "__main__":
    run_cli(main)
