"""The manifest: one utterance per JSON line, the contract between corpus readers and features.

Fields (see README "Manifest format"):

``id`` (unique), ``label``, ``group`` (speaker/subject; used for speaker-independent splits),
optional ``split`` (train/valid/test, for corpora with an official split), any of ``audio``
(wav/flac/mp3, or a video whose audio track is used), ``video``, ``image`` (a still face),
``text`` (transcript), ``start``/``end`` (seconds, a segment of a longer file), ``lang``
(``en``, ``de``, ``cmn``... for tokenisation and the alignment voice) and ``meta`` (free-form,
e.g. ``word_timings`` for corpora that ship forced alignments).

Media paths are relative to the corpus root (for a hand-written manifest: the manifest's
folder).  :func:`resolve_media` refuses a path that escapes that root.
"""
import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from .errors import BadItem, EmotionMXError
from .fileio import read_jsonl, write_jsonl

MEDIA_FIELDS = ("audio", "video", "image")
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Utterance:
    id: str
    label: str
    group: str
    split: Optional[str] = None
    audio: Optional[str] = None
    video: Optional[str] = None
    image: Optional[str] = None
    text: Optional[str] = None
    start: Optional[float] = None
    end: Optional[float] = None
    lang: Optional[str] = None
    meta: Dict[str, Any] = field(default_factory=dict)

    def modalities(self):
        """The modalities this item claims: subset of ('audio', 'text', 'video')."""
        out = []
        if self.audio:
            out.append("audio")
        if self.text is not None:
            out.append("text")
        if self.video or self.image:
            out.append("video")
        return tuple(out)

    def to_json(self):
        d = dataclasses.asdict(self)
        return {k: v for k, v in d.items() if v is not None and not (k == "meta" and not v)}

    @classmethod
    def from_json(cls, d, where="manifest"):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise EmotionMXError(f"{where}: unknown manifest field '{unknown[0]}' "
                                 f"(valid: {', '.join(sorted(names))})")
        for req in ("id", "label", "group"):
            if d.get(req) in (None, ""):
                raise EmotionMXError(f"{where}: manifest line without '{req}'")
        d = dict(d)
        d["id"], d["label"], d["group"] = str(d["id"]), str(d["label"]), str(d["group"])
        if d.get("split") is not None and d["split"] not in SPLITS:
            raise EmotionMXError(f"{where}: item {d['id']}: split must be one of {SPLITS}, got {d['split']!r}")
        return cls(**d)

    def replace(self, **kw):
        return dataclasses.replace(self, **kw)


def read_manifest(path):
    rows = read_jsonl(path)
    items = [Utterance.from_json(r, where=f"{path}:{i + 1}") for i, r in enumerate(rows)]
    seen = set()
    for it in items:
        if it.id in seen:
            raise EmotionMXError(f"{path}: duplicate item id '{it.id}'; ids must be unique")
        seen.add(it.id)
    return items


def write_manifest(path, items):
    write_jsonl(path, [it.to_json() for it in items])


def resolve_media(root, rel, item_id=None):
    """Absolute path of media ``rel`` under ``root``; BadItem if it escapes root or is missing."""
    # Lexical check (no symlink resolution): corpora are often symlinked into place.
    root_abs = os.path.abspath(root)
    path = os.path.normpath(os.path.join(root_abs, rel))
    if os.path.commonpath([root_abs, path]) != root_abs:
        raise BadItem(f"path '{rel}' is outside the corpus root {root}; keep media inside the root",
                      item_id=item_id)
    if not os.path.isfile(path):
        raise BadItem(f"missing file '{rel}' under {root}", item_id=item_id)
    return path
