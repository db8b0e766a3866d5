#!/usr/bin/env python
"""`python tools/predict.py ...` is `emotion-mx predict ...`: the command lives in emotion_mx/commands/predict.py."""
from emotion_mx.cli import run_cli
from emotion_mx.commands.predict import main

if __name__ == "__main__":
    run_cli(main)
