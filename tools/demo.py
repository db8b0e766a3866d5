#!/usr/bin/env python
"""`python tools/demo.py ...` is `emotion-mx demo ...`: the command lives in emotion_mx/commands/demo.py."""
from emotion_mx.cli import run_cli
from emotion_mx.commands.demo import main

if __name__ == "__main__":
    run_cli(main)
