"""emotion_mx: multimodal emotion recognition on Apache MXNet 1.9 / Gluon.

``from emotion_mx import EmotionRecognizer`` is the Python API (:mod:`emotion_mx.api`); it is
imported on first use, so ``import emotion_mx`` stays cheap (no MXNet import).
"""
__version__ = "0.1.0"

_LAZY = {"EmotionRecognizer": "api", "EmotionResult": "api", "InputError": "api"}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
