#!/usr/bin/env python
"""`python tools/cpp_predict.py ...` is `emotion-mx cpp-predict ...`: the command lives in emotion_mx/commands/cpp_predict.py."""
from emotion_mx.cli import run_cli
from emotion_mx.commands.cpp_predict import main

if __name__ == "__main__":
    run_cli(main)
