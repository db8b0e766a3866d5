"""Corpus readers: raw corpora → lists of :class:`~emotion_mx.manifest.Utterance`.

``get_reader(name)(root, **options)`` lists a corpus (raw labels, media paths relative to
``root``); ``read_corpus(name, root, **options)`` also returns the skipped entries with their
reasons.  Canonical labels come from :func:`emotion_mx.corpora.labels.apply_label_config`.
Readers only list files and labels; they never decode media.
"""
from .registry import (LayoutError, Reader, Skip, get_reader, list_readers, read_corpus, register_preset,
                       register_reader)
from . import casia, compose, cremad, emodb, faces, iemocap, manifest_reader, meld, ravdess, text_table  # noqa: F401  (registration)

__all__ = ["LayoutError", "Reader", "Skip", "get_reader", "list_readers", "read_corpus", "register_preset",
           "register_reader"]
