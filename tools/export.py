#!/usr/bin/env python
"""`python tools/export.py ...` is `emotion-mx export ...`: the command lives in emotion_mx/commands/export.py."""
from emotion_mx.cli import run_cli
from emotion_mx.commands.export import main

if __name__ == "__main__":
    run_cli(main)
