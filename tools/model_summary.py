#!/usr/bin/env python
"""`python tools/model_summary.py ...` is `emotion-mx model-summary ...`: the command lives in emotion_mx/commands/model_summary.py."""
from emotion_mx.cli import run_cli
from emotion_mx.commands.model_summary import main

if __name__ == "__main__":
    run_cli(main)
