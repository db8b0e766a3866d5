"""How an output folder was made: the command line, software versions and git commit.

The commands layer (``emotion_mx.commands``) calls :func:`write_command` after train, crossval,
distill, export and quantize, so every run and export folder holds ``command.json``::

    {"format": 1, "invocations": [{"argv": [...], "command": "...", "python": "...", "cwd": "...",
      "time": "2026-12-06T05:40:00Z", "versions": {"emotion_mx": ..., "mxnet": ..., "numpy": ...,
      "python": ...}, "platform": "...", "git": {"commit": "...", "dirty": false} | null}]}

A resumed run appends one invocation, so the list is the folder's whole history.
"""
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys

from . import __version__
from .fileio import write_json

__all__ = ["COMMAND_FILE", "provenance", "write_command", "software_versions", "git_state"]

COMMAND_FILE = "command.json"
FORMAT = 1
# distribution names the MXNet module may be installed under (EMOTION_MX_MXNET switch)
_MXNET_DISTS = ("mxnet", "mxnet-cu112", "mxnet-cu110", "mxnet-cu102", "mxnet-mkl")


def _dist_version(*names):
    import importlib.metadata     # here, not at the top: it costs ~60 ms of every command's start-up
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def software_versions():
    """Versions of emotion_mx, MXNet, numpy and Python (without importing MXNet if it is not
    imported yet: the installed distribution's metadata is read instead)."""
    mx = sys.modules.get("mxnet")
    np_ = sys.modules.get("numpy")
    return {
        "emotion_mx": __version__,
        "mxnet": getattr(mx, "__version__", None) or _dist_version(*_MXNET_DISTS),
        "numpy": getattr(np_, "__version__", None) or _dist_version("numpy"),
        "python": platform.python_version(),
    }


def git_state(path=None):
    """``{"commit": sha, "dirty": bool}`` of the git checkout holding ``path`` (default: this
    package's source), or None when it is not in a checkout or git is missing."""
    path = path or os.path.dirname(os.path.abspath(__file__))
    try:
        sha = subprocess.run(["git", "-C", path, "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
        if sha.returncode != 0:
            return None
        status = subprocess.run(["git", "-C", path, "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": sha.stdout.strip(), "dirty": bool(status.stdout.strip()) if status.returncode == 0 else None}


def provenance(argv=None):
    """One invocation record (see the module docstring)."""
    argv = list(sys.argv if argv is None else argv)
    shown = argv
    if argv and os.path.basename(argv[0]) == "__main__.py":        # python -m emotion_mx VERB ...
        shown = ["python", "-m", "emotion_mx"] + argv[1:]
    return {
        "argv": argv,
        "command": shlex.join(shown),
        "python": sys.executable,
        "cwd": os.getcwd(),
        "time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "versions": software_versions(),
        "platform": platform.platform(),
        "git": git_state(),
    }


def write_command(out_dir, argv=None):
    """Append this invocation to ``out_dir/command.json`` (atomically); return the path."""
    path = os.path.join(out_dir, COMMAND_FILE)
    invocations = []
    try:
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
        if isinstance(old, dict) and isinstance(old.get("invocations"), list):
            invocations = old["invocations"]
    except (FileNotFoundError, ValueError):
        pass                # first invocation, or an unreadable file that is replaced
    write_json(path, {"format": FORMAT, "invocations": invocations + [provenance(argv)]})
    return path
