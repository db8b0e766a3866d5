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
   its folds cannot be subject-independent: the same person may appear on both sides.  Its
   preset sets ``require_subjects: false``: a ``labels.csv`` without a subject column is then
   accepted (said once in the log); the other readers refuse it, naming the columns.

A ``split`` (or ``usage``) column in ``labels.csv`` gives the official split per file, in the
manifest's names or FER2013's ``Usage`` values (``Training`` → train, ``PublicTest`` → valid,
``PrivateTest`` → test); it wins over a split folder.
"""
import logging
import os
import re

from ..errors import EmotionMXError
from ..manifest import Utterance
from .common import csv_dicts, files, norm_split, rel, subdirs
from .registry import LayoutError, Skip, register_preset, register_reader

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".tif", ".tiff")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".m4a")
KINDS = {"image": IMAGE_EXTENSIONS, "audio": AUDIO_EXTENSIONS}
SUBJECT_COLUMNS = ("subject", "speaker")
SPLIT_COLUMNS = ("split", "usage")
log = logging.getLogger(__name__)


def _labels_csv(root, labels_csv, require_subjects):
    """``(subjects, splits, has_subjects)`` from ``labels_csv`` if present: ``{file: subject}``,
    ``{file: split value}`` (raw) and whether it has a subject column; empty when absent.
    Column names are matched without regard to case (FER2013 writes ``Usage``)."""
    path = os.path.join(root, labels_csv) if labels_csv else None
    if not path or not os.path.isfile(path):
        return {}, {}, False
    rows = csv_dicts(path)
    if not rows:
        return {}, {}, False
    columns = {c.strip().lower(): c for c in rows[0] if c}
    file_col = columns.get("file")
    subject_col = next((columns[c] for c in SUBJECT_COLUMNS if c in columns), None)
    split_col = next((columns[c] for c in SPLIT_COLUMNS if c in columns), None)
    if file_col is None or (subject_col is None and require_subjects):
        need = "'file' and 'subject' or 'speaker'" if require_subjects else "'file'"
        raise EmotionMXError(f"{path}: needs columns {need} (has: {', '.join(rows[0])}); add them, or set "
                             "reader.labels_csv: null to ignore the file")

    def column(col):
        if col is None:
            return {}
        return {r[file_col].strip(): r[col].strip() for r in rows if (r.get(col) or "").strip()}
    return column(subject_col), column(split_col), subject_col is not None


def _class_dirs(root):
    """[(split or None, class folder relative to root)] of the image set."""
    top = subdirs(root)
    split_dirs = [d for d in top if norm_split(d)]
    if split_dirs:
        return [(norm_split(s), rel(s, c)) for s in split_dirs for c in subdirs(os.path.join(root, s))]
    return [(None, c) for c in top]


@register_reader("face_folder", layout="<class>/<image>.png|jpg or <split>/<class>/<image>")
def read_face_folder(root, *, group_regex=None, labels_csv="labels.csv", kind="image", require_subjects=True):
    """Files labelled by their class folder; see the module docstring for how groups are found."""
    if kind not in KINDS:
        raise EmotionMXError(f"reader option kind must be one of {', '.join(KINDS)}, got {kind!r}")
    pattern = re.compile(group_regex) if group_regex else None
    subjects, splits, has_subjects = _labels_csv(root, labels_csv, require_subjects)
    found = own_group = 0
    for split, class_dir in _class_dirs(root):
        label = os.path.basename(class_dir)
        for name in files(os.path.join(root, class_dir), KINDS[kind]):
            found += 1
            path = rel(class_dir, name)
            item_id = path.rsplit(".", 1)[0].replace("/", "-")
            item_split = norm_split(splits[path]) if path in splits else split
            if item_split is None and path in splits:
                yield Skip(path, f"{labels_csv}: unknown split {splits[path]!r} (give train/valid/test or "
                                 "FER2013's Training/PublicTest/PrivateTest)")
                continue
            group = subjects.get(path)
            if group is None and pattern:
                m = pattern.search(name)
                if not m:
                    yield Skip(path, f"no subject id in the file name (group_regex {group_regex!r} does not match)")
                    continue
                group = m.group(1) if m.groups() else m.group(0)
            own_group += not group
            yield Utterance(id=item_id, label=label, group=group or item_id, split=item_split, **{kind: path})
    if not found:
        raise LayoutError(f"no <class>/<{kind} file> under {root}")
    if own_group and not has_subjects and not require_subjects:
        why = ("reader.labels_csv is null" if not labels_csv else f"{labels_csv} has no 'subject' column"
               if os.path.isfile(os.path.join(root, labels_csv)) else f"no {labels_csv}")
        log.info("%d of %d files have no subject id (%s): each is its own group, so the folds are not "
                 "subject-independent", own_group, found, why)


register_preset("ckplus", "face_folder", group_regex=r"^(S\d+)_")
register_preset("fer2013", "face_folder", group_regex=None, require_subjects=False)
register_preset("clip_folder", "face_folder", layout="<class>/<clip>.wav|flac|ogg|mp3|m4a (+ labels.csv: file, speaker)",
                kind="audio")
