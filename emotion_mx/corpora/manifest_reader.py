"""Pass-through of a hand-written JSON-lines manifest (see :mod:`emotion_mx.manifest`).

The corpus root is the manifest's folder; media paths are relative to it.  A line that is not
valid JSON or not a valid utterance is skipped with the reason, not fatal.
"""
import json
import os

from ..errors import EmotionMXError
from ..manifest import Utterance
from .common import read_text
from .registry import LayoutError, Skip, register_reader


@register_reader("manifest", layout="<root>/manifest.jsonl, one JSON utterance per line, media paths "
                                     "relative to the root")
def read_manifest_items(root, *, path="manifest.jsonl"):
    """Items of ``root/path`` as they are (labels raw, split and group as written)."""
    full = os.path.join(root, path)
    if not os.path.isfile(full):
        raise LayoutError(f"no {path} under {root}")
    for n, line in enumerate(read_text(full).splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise EmotionMXError("a manifest line must be a JSON object")
            yield Utterance.from_json(row, where=where)
        except json.JSONDecodeError as e:
            yield Skip(where, f"not valid JSON ({e.msg})")
        except (EmotionMXError, TypeError) as e:
            yield Skip(where, str(e))
