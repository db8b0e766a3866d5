#!/usr/bin/env python
"""`python tools/build_dataset.py ...` is `emotion-mx build ...`: the command lives in emotion_mx/commands/build.py."""
from emotion_mx.cli import run_cli
from emotion_mx.commands.build import main

if __name__ == "__main__":
    run_cli(main)
