#!/usr/bin/env python
"""`python tools/train.py ...` is `emotion-mx train ...`: the command lives in emotion_mx/commands/train.py."""
from emotion_mx.cli import run_cli
from emotion_mx.commands.train import main

if __name__ == "__main__":
    run_cli(main)
