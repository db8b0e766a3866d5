"""Small helpers shared by the corpus readers (paths, splits, CSV files, option values)."""
import csv
import io
import os

from ..errors import EmotionMXError
from .registry import LayoutError

# Folder / file / column names of splits → the manifest's split names.
SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "valid": "valid", "val": "valid", "validation": "valid", "dev": "valid", "publictest": "valid",
    "test": "test", "testing": "test", "privatetest": "test",
}


def norm_split(name):
    """Manifest split name for a corpus' split name (``dev`` → ``valid``), or None if unknown."""
    return SPLIT_ALIASES.get(str(name).strip().lower())


def rel(*parts):
    """A media path relative to the corpus root, with forward slashes."""
    return "/".join(p.strip("/").replace(os.sep, "/") for p in parts if p not in ("", "."))


def subdirs(path):
    """Sorted names of the visible sub-folders of ``path`` ([] if it is not a folder)."""
    if not os.path.isdir(path):
        return []
    return sorted(d for d in os.listdir(path) if not d.startswith(".") and os.path.isdir(os.path.join(path, d)))


def files(path, exts):
    """Sorted names of the visible files of ``path`` ending with one of ``exts`` (lower-case)."""
    if not os.path.isdir(path):
        return []
    return sorted(f for f in os.listdir(path)
                  if not f.startswith(".") and f.lower().endswith(tuple(exts)) and os.path.isfile(os.path.join(path, f)))


def require_dir(root, *parts, example):
    """``root/parts`` as a path; LayoutError naming it and an example if it is not a folder."""
    path = os.path.join(root, *parts)
    if not os.path.isdir(path):
        raise LayoutError(f"no {rel(*parts)}/ folder under {root} (e.g. {example})")
    return path


def read_text(path, encoding="utf-8"):
    """A text file's content; UTF-8 with a cp1252 fallback (old corpora mix both)."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _text_stream(path, encoding="utf-8"):
    return io.StringIO(read_text(path, encoding).lstrip("\ufeff"), newline="")


def csv_rows(path, delimiter=",", quoting=True, encoding="utf-8"):
    """Rows (lists of strings) of a delimited text file; ``quoting=False`` keeps quotes as text."""
    return list(csv.reader(_text_stream(path, encoding), delimiter=delimiter,
                           quoting=csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE))


def csv_dicts(path):
    """Rows of a CSV file with a header, as dicts."""
    return list(csv.DictReader(_text_stream(path)))


def as_tuple(value, option, valid):
    """Option ``value`` (a name or a list of names) as a tuple, each checked against ``valid``."""
    values = (value,) if isinstance(value, str) else tuple(value)
    for v in values:
        if v not in valid:
            raise EmotionMXError(f"option '{option}': unknown value {v!r} (valid: {', '.join(valid)})")
    return values


def check_choice(value, option, valid):
    if value not in valid:
        raise EmotionMXError(f"option '{option}' must be one of {', '.join(map(repr, valid))}, got {value!r}")
    return value
