"""Reader registry: corpus name → reader, option checking, skipped-entry bookkeeping.

A reader is written as a generator ``scan(root, *, option=default, ...)`` that yields
:class:`~emotion_mx.manifest.Utterance` items and :class:`Skip` records (one per malformed
entry).  :func:`register_reader` wraps it into a :class:`Reader`, which

* checks option names against the keyword-only parameters of ``scan``;
* checks that ``root`` is a folder and turns :class:`LayoutError` into one message that shows
  the layout the reader expected;
* skips items whose media path is absolute or escapes ``root``, and duplicate ids.

``reader(root, **options)`` returns the items; :func:`read_corpus` also returns the skipped
entries as ``(id_or_path, reason)`` pairs.
"""
import inspect
import os
import posixpath
from typing import NamedTuple

from ..errors import EmotionMXError
from ..manifest import MEDIA_FIELDS

__all__ = ["Skip", "LayoutError", "Reader", "register_reader", "register_preset", "get_reader",
           "list_readers", "read_corpus"]

_READERS = {}


class Skip(NamedTuple):
    """A corpus entry that could not be turned into an item: ``(entry, reason)``."""
    entry: str
    reason: str


class LayoutError(EmotionMXError):
    """The corpus root does not have the layout a reader expects (raised inside ``scan``)."""


class Reader:
    """A registered corpus reader; call it as ``reader(root, **options) -> list[Utterance]``."""

    def __init__(self, name, scan, layout, preset=None):
        self.name = name
        self.layout = layout
        self.preset = dict(preset or {})
        self._scan = scan
        params = inspect.signature(scan).parameters.values()
        self.defaults = {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY}
        self.defaults.update(self.preset)
        self.__doc__ = scan.__doc__

    def __call__(self, root, **options):
        return self.scan(root, **options)[0]

    def __repr__(self):
        return f"<corpus reader '{self.name}'>"

    def scan(self, root, **options):
        """``(items, skipped)``: the corpus' items and ``[(id_or_path, reason)]`` for the rest."""
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            valid = ", ".join(sorted(self.defaults)) or "none"
            raise EmotionMXError(f"reader '{self.name}': unknown option '{unknown[0]}' (valid options: {valid})")
        root = str(root)
        if not os.path.isdir(root):
            raise EmotionMXError(f"reader '{self.name}': corpus root {root} is not a folder; "
                                 f"expected the {self.name} layout: {self.layout}")
        _check_path_options(self.name, root, options)
        items, skipped, seen = [], [], set()
        try:
            for entry in self._scan(root, **{**self.preset, **options}):
                if isinstance(entry, Skip):
                    skipped.append(entry)
                    continue
                reason = _media_problem(entry) or (f"duplicate item id '{entry.id}'" if entry.id in seen else None)
                if reason:
                    skipped.append(Skip(entry.id, reason))
                    continue
                seen.add(entry.id)
                items.append(entry)
        except LayoutError as e:
            raise EmotionMXError(f"reader '{self.name}': {e}; expected the {self.name} layout: {self.layout}") from None
        return items, [tuple(s) for s in skipped]


PATH_OPTIONS = ("path", "labels_csv", "label_names")   # reader options naming a file under the root


def _check_path_options(reader, root, options):
    """A reader option naming a file (``reader.path`` in a dataset config...) must stay inside
    the corpus root after symlinks are followed: a config from someone else must not make the
    build read ``/etc/...`` or ``../../``."""
    from ..manifest import inside_root
    for key in PATH_OPTIONS:
        value = options.get(key)
        if value is None or isinstance(value, bool):
            continue
        if not isinstance(value, str) or inside_root(root, value) is None:
            raise EmotionMXError(f"reader '{reader}': option '{key}' = {value!r} is outside the corpus root "
                                 f"{root} (symlinks followed); give a path relative to the root")


def _media_problem(item):
    """Why ``item``'s media paths are unusable (absolute or outside the root), or None."""
    for name in MEDIA_FIELDS:
        rel = getattr(item, name)
        if rel is None:
            continue
        norm = posixpath.normpath(rel.replace("\\", "/"))
        if posixpath.isabs(norm) or norm == ".." or norm.startswith("../"):
            return f"{name} path '{rel}' is outside the corpus root; media paths must be relative to the root"
    return None


def register_reader(name, layout, aliases=()):
    """Decorator registering generator ``scan(root, *, options...)`` as reader ``name``.

    ``layout`` is a short description of the expected folder layout, shown in errors.
    """
    def wrap(scan):
        for key in (name, *aliases):
            if key in _READERS:
                raise EmotionMXError(f"corpus reader '{key}' is registered twice")
            _READERS[key] = Reader(key, scan, layout)
        return scan
    return wrap


def register_preset(name, base, layout=None, **preset):
    """Register ``name`` as reader ``base`` with default options ``preset`` (overridable)."""
    reader = get_reader(base)
    if name in _READERS:
        raise EmotionMXError(f"corpus reader '{name}' is registered twice")
    _READERS[name] = Reader(name, reader._scan, layout or reader.layout, {**reader.preset, **preset})


def get_reader(name):
    """The :class:`Reader` registered as ``name``; unknown names list the valid ones."""
    try:
        return _READERS[name]
    except KeyError:
        raise EmotionMXError(f"unknown corpus reader '{name}' (valid: {', '.join(list_readers())})") from None


def list_readers():
    return sorted(_READERS)


def read_corpus(name, root, **options):
    """Read corpus ``name`` at ``root``: ``(items, skipped)`` with skipped ``[(id_or_path, reason)]``."""
    return get_reader(name).scan(root, **options)
