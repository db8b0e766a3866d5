"""emotion_mx: multimodal emotion recognition on Apache MXNet 1.9 / Gluon."""
__version__ = "0.1.0"
