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
import math
import os
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from .errors import BadItem, EmotionMXError
from .fileio import read_jsonl, write_jsonl

MEDIA_FIELDS = ("audio", "video", "image")
SPLITS = ("train", "valid", "test")
MAX_ID_CHARS = 200
# Row schema: field -> accepted JSON types (checked at read time, so a wrong type is found on
# the line it is on, not after feature extraction).
_STR_FIELDS = ("split", "audio", "video", "image", "text", "lang")
_NUM_FIELDS = ("start", "end")


def check_item_id(item_id, where="manifest"):
    """Refuse an id a later stage cannot store or name: empty, too long, or holding control,
    format or unassigned characters (a NUL made a store that could not be read back)."""
    if not isinstance(item_id, str) or not item_id.strip():
        raise EmotionMXError(f"{where}: item id {item_id!r} is empty; give every item a non-empty id")
    if len(item_id) > MAX_ID_CHARS:
        raise EmotionMXError(f"{where}: item id {item_id[:40]!r}... is longer than {MAX_ID_CHARS} characters")
    bad = [ch for ch in item_id if unicodedata.category(ch)[0] == "C"]
    if bad or item_id != item_id.strip():
        what = f"character {bad[0]!r}" if bad else "leading/trailing whitespace"
        raise EmotionMXError(f"{where}: item id {item_id!r} contains {what}; "
                             "use printable characters only")
    return item_id


def _check_types(d, where):
    for key in ("id", "label", "group"):
        if not isinstance(d[key], (str, int)) or isinstance(d[key], bool):
            raise EmotionMXError(f"{where}: field '{key}' must be a string, got {type(d[key]).__name__}")
    for key in _STR_FIELDS:
        if d.get(key) is not None and not isinstance(d[key], str):
            raise EmotionMXError(f"{where}: field '{key}' must be a string, got {type(d[key]).__name__}")
    for key in _NUM_FIELDS:
        v = d.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
            raise EmotionMXError(f"{where}: field '{key}' must be a finite number of seconds, got {v!r}")
    if d.get("meta") is not None and not isinstance(d["meta"], dict):
        raise EmotionMXError(f"{where}: field 'meta' must be an object, got {type(d['meta']).__name__}")
    wt = (d.get("meta") or {}).get("word_timings")
    if wt is not None and not isinstance(wt, str):
        raise EmotionMXError(f"{where}: field 'meta.word_timings' must be a string path")
    groups = (d.get("meta") or {}).get("groups")
    if groups is not None and not (isinstance(groups, dict) and all(
            isinstance(k, str) and isinstance(v, (str, int)) and not isinstance(v, bool) for k, v in groups.items())):
        raise EmotionMXError(f"{where}: field 'meta.groups' must be an object of source name -> group "
                             f"(e.g. {{\"audio\": \"spk01\"}}), got {type(groups).__name__}")
    for key in ("label", "group"):
        check_name(str(d[key]), key, where)


def check_name(value, key, where="manifest"):
    """A label or group must be visible text: blank, padded or control characters would make a
    class (or speaker) that looks like another or like nothing."""
    bad = [ch for ch in value if unicodedata.category(ch)[0] == "C"]
    if not value.strip() or value != value.strip() or bad:
        what = ("is blank" if not value.strip() else f"contains character {bad[0]!r}" if bad
                else "has leading/trailing whitespace")
        raise EmotionMXError(f"{where}: field '{key}' {value!r} {what}; write it as visible text "
                             f"(e.g. {value.strip() or 'anger'!r})")
    return value


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
        if not isinstance(d, dict):
            raise EmotionMXError(f"{where}: a manifest line must be a JSON object, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise EmotionMXError(f"{where}: unknown manifest field '{unknown[0]}' "
                                 f"(valid: {', '.join(sorted(names))})")
        for req in ("id", "label", "group"):
            if d.get(req) in (None, ""):
                raise EmotionMXError(f"{where}: manifest line without '{req}'")
        _check_types(d, where)
        d = dict(d)
        d["id"], d["label"], d["group"] = str(d["id"]), str(d["label"]), str(d["group"])
        check_item_id(d["id"], where)
        if d.get("meta") is None:
            d.pop("meta", None)
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


def inside_root(root, rel):
    """Real path of ``rel`` under ``root`` after every symlink is followed, or None if it leaves
    the root (the root itself may be a symlink: a corpus symlinked into place works)."""
    if not isinstance(rel, str) or not rel or "\0" in rel:
        return None
    root_real = os.path.realpath(root)
    path = os.path.realpath(os.path.join(root_real, rel))
    if os.path.commonpath([root_real, path]) != root_real:
        return None
    return path


def resolve_media(root, rel, item_id=None):
    """Real path of media ``rel`` under ``root``; BadItem if it escapes root (also through a
    symlink) or is missing."""
    path = inside_root(root, rel)
    if path is None:
        raise BadItem(f"path '{rel}' is outside the corpus root {root} (symlinks followed); keep media "
                      "inside the root", item_id=item_id)
    if not os.path.isfile(path):
        raise BadItem(f"missing file '{rel}' under {root}", item_id=item_id)
    return path


def media_stamp(root, item):
    """Size and modification time of every file ``item`` reads, plus its manifest row: a change to
    any of them makes a resumed build extract the item again."""
    files = [getattr(item, k) for k in MEDIA_FIELDS] + [(item.meta or {}).get("word_timings")]
    stamp = [item.to_json()]
    for rel in files:
        path = inside_root(root, rel) if rel else None
        try:
            st = os.stat(path) if path else None
        except OSError:
            st = None
        stamp.append([rel, st.st_size, st.st_mtime_ns] if st else [rel, None, None])
    return stamp
