"""CASIA Chinese emotional speech corpus (public 1,200-utterance part).

Layout: ``<speaker>/<emotion>/<n>.wav`` with speakers liuchang, wangzhe, zhaoquanyin,
ZhaoZuoxiang and emotions angry fear happy neutral sad surprise.  No transcripts.
"""
import os

from ..manifest import Utterance
from .common import files, rel, subdirs
from .registry import LayoutError, Skip, register_reader

EMOTIONS = ("angry", "fear", "happy", "neutral", "sad", "surprise")


@register_reader("casia", layout="<speaker>/<emotion>/<n>.wav, e.g. liuchang/angry/201.wav")
def read_casia(root):
    """CASIA utterances: label = emotion folder, group = speaker folder, lang ``cmn``."""
    found = False
    for speaker in subdirs(root):
        for emotion in subdirs(os.path.join(root, speaker)):
            if emotion not in EMOTIONS:
                yield Skip(rel(speaker, emotion), f"unknown emotion folder '{emotion}' (valid: {', '.join(EMOTIONS)})")
                continue
            for name in files(os.path.join(root, speaker, emotion), (".wav",)):
                found = True
                yield Utterance(id=f"{speaker}_{emotion}_{os.path.splitext(name)[0]}", label=emotion, group=speaker,
                                audio=rel(speaker, emotion, name), lang="cmn")
    if not found:
        raise LayoutError(f"no <speaker>/<emotion>/*.wav files under {root}")
