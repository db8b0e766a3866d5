"""Optional dependencies: one import helper, one error line naming the pip extra to install.

    onnx = require("onnx", "onnx")            # raises EmotionMXError if the extra is missing

The extras are declared in ``pyproject.toml`` (``[project.optional-dependencies]``).
"""
import importlib

from .errors import EmotionMXError

__all__ = ["require", "MissingExtra", "install_hint"]


class MissingExtra(EmotionMXError):
    """An optional dependency is not installed; ``extra`` names the pip extra that brings it."""

    def __init__(self, message, extra):
        super().__init__(message)
        self.extra = extra


def install_hint(extra):
    return f"pip install 'emotion_mx[{extra}]'"


def require(module, extra, feature=None):
    """Import and return ``module``; if it (or one of its own imports) is missing, raise one
    :class:`MissingExtra` line: what needs it, the import error, and the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        what = feature or module
        detail = (str(e).splitlines() or [e.__class__.__name__])[0]
        raise MissingExtra(f"{what} needs the optional '{extra}' dependencies ({detail}); "
                           f"install them with {install_hint(extra)}", extra) from None
