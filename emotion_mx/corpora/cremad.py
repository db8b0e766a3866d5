"""CREMA-D (Cao et al. 2014): 91 actors, 12 sentences, 6 emotions, audio and video.

Layout: ``AudioWAV/1001_DFA_ANG_XX.wav`` and/or ``VideoFlash/1001_DFA_ANG_XX.flv``: actor id,
sentence code, emotion code, intensity (LO MD HI, XX unspecified).  Items are the union of
both folders: ``audio`` is the wav (or the flv's audio track when no wav exists), ``video``
the flv.
"""
import os
import re

from ..manifest import Utterance
from .common import files, rel
from .labels import DEFAULT_LABELS
from .registry import LayoutError, Skip, register_reader

SENTENCES = {
    "IEO": "It's eleven o'clock", "TIE": "That is exactly what happened", "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about", "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold", "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment", "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before", "TSI": "The surface is slick", "WSI": "We'll stop in a couple of minutes",
}
EMOTION_CODES = frozenset(DEFAULT_LABELS["cremad"]["map"])
INTENSITIES = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
FOLDERS = {"audio": ("AudioWAV", ".wav"), "video": ("VideoFlash", ".flv")}

NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")


@register_reader("cremad", layout="AudioWAV/1001_DFA_ANG_XX.wav and/or VideoFlash/1001_DFA_ANG_XX.flv")
def read_cremad(root):
    """CREMA-D clips (raw labels ANG DIS FEA HAP NEU SAD; group = actor id)."""
    found = {kind: {os.path.splitext(f)[0]: rel(folder, f) for f in files(os.path.join(root, folder), (ext,))}
             for kind, (folder, ext) in FOLDERS.items()}
    if not any(os.path.isdir(os.path.join(root, folder)) for folder, _ in FOLDERS.values()):
        raise LayoutError(f"no AudioWAV/ or VideoFlash/ folder under {root}")
    for stem in sorted(set(found["audio"]) | set(found["video"])):
        path = found["audio"].get(stem) or found["video"][stem]
        m = NAME.match(stem)
        if not m:
            yield Skip(path, "file name is not actor_sentence_emotion_intensity, e.g. 1001_DFA_ANG_XX")
            continue
        actor, sentence, emotion, intensity = m.groups()
        if sentence not in SENTENCES or emotion not in EMOTION_CODES or intensity not in INTENSITIES:
            yield Skip(path, f"unknown sentence, emotion or intensity code in '{stem}'")
            continue
        video = found["video"].get(stem)
        yield Utterance(id=stem, label=emotion, group=actor, audio=found["audio"].get(stem) or video,
                        video=video, text=SENTENCES[sentence], lang="en",
                        meta={"sentence": sentence, "intensity": INTENSITIES[intensity]})
