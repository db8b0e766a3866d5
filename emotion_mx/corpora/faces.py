"""Media stored folder-per-class: face images (CK+48 crops, FER2013's image-folder export...)
and, with ``kind: audio`` (reader ``clip_folder``), a user's own labelled speech clips.

Layout: ``<class>/<file>.png|jpg`` (``.wav|flac|ogg|mp3|m4a`` for clips) or, with an official
split, ``<split>/<class>/<file>``
(``train``/``valid``/``test`` and the usual aliases, e.g. FER2013's ``train/``, ``test/``).

The group (subject) decides speaker-independent splitting:

1. a ``labels.csv`` in the root with columns ``file`` (path relative to the root) and
   ``subject`` (or ``speaker``) gives it per file;
2. else ``group_regex`` (first capture group, searched in the file name; CK+: ``^(S\\d+)_``);
3. else (``group_regex`` None) every image is its own group.  FER2013 has no subject ids, so
   its folds cannot be subject-independent: the same person may appear on both sides.
"""
import os
import re

from ..errors import EmotionMXError
from ..manifest import Utterance
from .common import csv_dicts, files, norm_split, rel, subdirs
from .registry import LayoutError, Skip, register_preset, register_reader

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".tif", ".tiff")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".m4a")
KINDS = {"image": IMAGE_EXTENSIONS, "audio": AUDIO_EXTENSIONS}


def _subjects(root, labels_csv):
    """{relative file path: subject} from ``labels_csv`` if present (else empty)."""
    path = os.path.join(root, labels_csv) if labels_csv else None
    if not path or not os.path.isfile(path):
        return {}
    rows = csv_dicts(path)
    column = next((c for c in ("subject", "speaker") if rows and c in rows[0]), None)
    if rows and ("file" not in rows[0] or column is None):
        raise EmotionMXError(f"{path}: needs columns 'file' and 'subject' or 'speaker' (has: {', '.join(rows[0])})")
    return {r["file"].strip(): r[column].strip() for r in rows if (r.get(column) or "").strip()}


def _class_dirs(root):
    """[(split or None, class folder relative to root)] of the image set."""
    top = subdirs(root)
    split_dirs = [d for d in top if norm_split(d)]
    if split_dirs:
        return [(norm_split(s), rel(s, c)) for s in split_dirs for c in subdirs(os.path.join(root, s))]
    return [(None, c) for c in top]


@register_reader("face_folder", layout="<class>/<image>.png|jpg or <split>/<class>/<image>")
def read_face_folder(root, *, group_regex=None, labels_csv="labels.csv", kind="image"):
    """Files labelled by their class folder; see the module docstring for how groups are found."""
    if kind not in KINDS:
        raise EmotionMXError(f"reader option kind must be one of {', '.join(KINDS)}, got {kind!r}")
    pattern = re.compile(group_regex) if group_regex else None
    subjects = _subjects(root, labels_csv)
    found = False
    for split, class_dir in _class_dirs(root):
        label = os.path.basename(class_dir)
        for name in files(os.path.join(root, class_dir), KINDS[kind]):
            found = True
            path = rel(class_dir, name)
            item_id = path.rsplit(".", 1)[0].replace("/", "-")
            group = subjects.get(path)
            if group is None and pattern:
                m = pattern.search(name)
                if not m:
                    yield Skip(path, f"no subject id in the file name (group_regex {group_regex!r} does not match)")
                    continue
                group = m.group(1) if m.groups() else m.group(0)
            yield Utterance(id=item_id, label=label, group=group or item_id, split=split, **{kind: path})
    if not found:
        raise LayoutError(f"no <class>/<{kind} file> under {root}")


register_preset("ckplus", "face_folder", group_regex=r"^(S\d+)_")
register_preset("fer2013", "face_folder", group_regex=None)
register_preset("clip_folder", "face_folder", layout="<class>/<clip>.wav|flac|ogg|mp3|m4a (+ labels.csv: file, speaker)",
                kind="audio")
