"""Hardening (issue 13): data loss, code execution from files, silent wrong results, tracebacks."""
import os
import subprocess
import sys

import numpy as np
import pytest

from emotion_mx.errors import BadItem, EmotionMXError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------- determinism

def test_synthesis_does_not_depend_on_what_was_spoken_before():
    """espeak-ng state used to carry over between syntheses (word alignment differed between
    builds of the same items depending on worker scheduling)."""
    from emotion_mx.features.tts import synthesize
    text = "The quick brown fox jumps over the lazy dog"
    first = synthesize(text, "en+m1")
    synthesize("I am so angry with you, really!", "en+m3")
    synthesize("Hello there, how are you today?", "en+f2")
    again = synthesize(text, "en+m1")
    assert first[1] == again[1] and first[2] == again[2]
    np.testing.assert_array_equal(first[0], again[0])
