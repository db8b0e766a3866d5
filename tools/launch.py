#!/usr/bin/env python
"""`python tools/launch.py ...` is `emotion-mx launch ...`: the command lives in emotion_mx/commands/launch.py."""
from emotion_mx.cli import run_cli
from emotion_mx.commands.launch import main

if __name__ == "__main__":
    run_cli(main)
