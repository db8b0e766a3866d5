"""RAVDESS (Livingstone & Russo 2018): 24 actors, speech and song, audio-only and audio-visual.

Layout: ``Actor_01`` .. ``Actor_24`` folders anywhere under the root (the official zips
unpack as ``Audio_Speech_Actors_01-24/Actor_01/...``, ``Video_Speech_Actor_01/Actor_01/...``),
files ``MM-VV-EE-II-SS-RR-AA.wav|mp4``: modality (01 full AV, 02 video only, 03 audio only),
vocal channel (01 speech, 02 song), emotion, intensity (01 normal, 02 strong), statement,
repetition, actor (odd = male, even = female).
"""
import os
import re

from ..manifest import Utterance
from .common import as_tuple, rel
from .registry import LayoutError, Skip, register_reader

MODALITIES = {"01": "av", "02": "video", "03": "audio"}
CHANNELS = {"01": "speech", "02": "song"}
EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fearful",
            "07": "disgust", "08": "surprised"}
INTENSITIES = {"01": "normal", "02": "strong"}
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
EXTENSIONS = {"av": ".mp4", "video": ".mp4", "audio": ".wav"}

NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)(\.\w+)$")
ACTOR_DIR = re.compile(r"^Actor_(\d\d)$")


def _parse(file_name, path):
    m = NAME.match(file_name)
    if not m:
        return Skip(path, "file name is not modality-channel-emotion-intensity-statement-repetition-actor, "
                          "e.g. 03-01-05-01-02-01-12.wav")
    mod, chan, emo, inten, stmt, rep, actor, ext = m.groups()
    codes = ((mod, MODALITIES, "modality"), (chan, CHANNELS, "vocal channel"), (emo, EMOTIONS, "emotion"),
             (inten, INTENSITIES, "intensity"), (stmt, STATEMENTS, "statement"))
    for code, table, what in codes:
        if code not in table:
            return Skip(path, f"unknown {what} code '{code}' (valid: {', '.join(table)})")
    kind = MODALITIES[mod]
    if ext.lower() != EXTENSIONS[kind]:
        return Skip(path, f"modality {mod} ({kind}) should be a {EXTENSIONS[kind]} file")
    return Utterance(
        id=os.path.splitext(file_name)[0], label=EMOTIONS[emo], group=f"Actor_{actor}",
        audio=path if kind in ("av", "audio") else None, video=path if kind in ("av", "video") else None,
        text=STATEMENTS[stmt], lang="en",
        meta={"modality": kind, "channel": CHANNELS[chan], "intensity": INTENSITIES[inten],
              "statement": stmt, "repetition": int(rep), "gender": "male" if int(actor) % 2 else "female"})


@register_reader("ravdess", layout="Actor_01..Actor_24/03-01-05-01-02-01-12.wav|mp4 (any depth)")
def read_ravdess(root, *, modalities=("av", "audio", "video"), channels=("speech", "song")):
    """RAVDESS recordings found in ``Actor_XX`` folders anywhere under ``root``.

    ``modalities``: which file kinds to list: ``av`` (full audio-visual mp4, used as video and
    audio), ``audio`` (wav) and/or ``video`` (silent mp4).  The same performance exists in
    several kinds, so pick the ones you need.  ``channels``: ``speech`` and/or ``song``.
    """
    modalities = as_tuple(modalities, "modalities", tuple(EXTENSIONS))
    channels = as_tuple(channels, "channels", tuple(CHANNELS.values()))
    actor_dirs = 0
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if not ACTOR_DIR.match(os.path.basename(folder)):
            continue
        actor_dirs += 1
        for name in sorted(n for n in names if not n.startswith(".")):
            path = rel(os.path.relpath(os.path.join(folder, name), root))
            item = _parse(name, path)
            if isinstance(item, Skip) or (item.meta["modality"] in modalities and item.meta["channel"] in channels):
                yield item
    if not actor_dirs:
        raise LayoutError(f"no Actor_XX folder under {root}")
