#!/usr/bin/env python
"""`python tools/search.py ...` is `emotion-mx search ...`: the command lives in emotion_mx/commands/search.py."""
from emotion_mx.cli import run_cli
from emotion_mx.commands.search import main

if __name__ == "__main__":
    run_cli(main)
