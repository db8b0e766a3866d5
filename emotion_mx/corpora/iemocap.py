"""IEMOCAP (Busso et al. 2008): five dyadic sessions, ten actors, audio + video + transcripts.

Layout (``IEMOCAP_full_release``)::

    Session1/dialog/EmoEvaluation/Ses01F_impro01.txt    [6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]
    Session1/dialog/transcriptions/Ses01F_impro01.txt   Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.
    Session1/dialog/wav/Ses01F_impro01.wav              whole dialog (both actors' microphones)
    Session1/dialog/avi/DivX/Ses01F_impro01.avi         whole dialog video
    Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav
    Session1/sentences/ForcedAlignment/Ses01F_impro01/Ses01F_impro01_F000.wdseg

An utterance id ends with the speaker's gender letter and a number (``..._F000``); the
session's actors are one man and one woman, so session + that letter identifies the speaker.
Raw labels: neu hap exc ang sad fru sur fea dis oth xxx.
"""
import os
import re

from ..manifest import Utterance
from .common import check_choice, files, read_text, rel
from .registry import LayoutError, Skip, register_reader

EVAL_LINE = re.compile(r"^\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]\s+(\S+)\s+(\S+)\s+\[([^\]]*)\]")
TRANSCRIPT_LINE = re.compile(r"^(\S+)\s+\[[^\]]*\]:\s*(.*)$")
UTT_ID = re.compile(r"^Ses(\d\d)[FM]_.+_([FM])[^_]*$")

GROUP_BY = ("session", "speaker")
MEDIA = ("dialog", "sentence")


def _transcripts(path):
    """{utterance id: text} of one dialog's transcription file."""
    out = {}
    if os.path.isfile(path):
        for line in read_text(path).splitlines():
            m = TRANSCRIPT_LINE.match(line.strip())
            if m:
                out[m[1]] = m[2].strip()
    return out


def _session(root, session_dir, group_by, media):
    dialog = os.path.join(root, session_dir, "dialog")
    for eval_file in files(os.path.join(dialog, "EmoEvaluation"), (".txt",)):
        name = os.path.splitext(eval_file)[0]
        eval_rel = rel(session_dir, "dialog", "EmoEvaluation", eval_file)
        texts = _transcripts(os.path.join(dialog, "transcriptions", eval_file))
        avi = rel(session_dir, "dialog", "avi", "DivX", name + ".avi")
        has_avi = os.path.isfile(os.path.join(root, avi))
        for n, line in enumerate(read_text(os.path.join(dialog, "EmoEvaluation", eval_file)).splitlines(), 1):
            if not line.startswith("["):
                continue                      # per-annotator lines (C-E1:, A-F1:...) and headers
            m = EVAL_LINE.match(line)
            uid = UTT_ID.match(m[3]) if m else None
            if not uid:
                yield Skip(f"{eval_rel}:{n}", f"not an evaluation line '[start - end] <TAB>id<TAB>label<TAB>[v, a, d]': {line.strip()[:60]!r}")
                continue
            start, end, utt, label, vad = float(m[1]), float(m[2]), m[3], m[4], m[5]
            group = f"Ses{uid[1]}" + (f"_{uid[2]}" if group_by == "speaker" else "")
            meta = {"dialog": name, "session": int(uid[1]), "gender": "female" if uid[2] == "F" else "male"}
            try:
                meta["vad"] = [float(v) for v in vad.split(",")]
            except ValueError:
                pass                          # a missing dimensional rating is not fatal
            wdseg = rel(session_dir, "sentences", "ForcedAlignment", name, utt + ".wdseg")
            if os.path.isfile(os.path.join(root, wdseg)):
                meta["word_timings"] = wdseg  # times relative to the utterance start
            if media == "dialog":
                yield Utterance(id=utt, label=label, group=group, audio=rel(session_dir, "dialog", "wav", name + ".wav"),
                                video=avi if has_avi else None, text=texts.get(utt), start=start, end=end,
                                lang="en", meta=meta)
            else:
                meta["dialog_span"] = [start, end]
                yield Utterance(id=utt, label=label, group=group,
                                audio=rel(session_dir, "sentences", "wav", name, utt + ".wav"),
                                text=texts.get(utt), lang="en", meta=meta)


@register_reader("iemocap", layout="Session1..Session5/dialog/EmoEvaluation/Ses01F_impro01.txt with "
                                    "dialog/{transcriptions,wav,avi/DivX}/ and sentences/{wav,ForcedAlignment}/")
def read_iemocap(root, *, group_by="session", media="dialog"):
    """IEMOCAP utterances (every evaluated turn, raw labels).

    ``group_by``: ``session`` (leave-one-session-out) or ``speaker`` (``Ses01_F``).
    ``media``: ``dialog`` → audio = dialog wav and video = dialog avi (when present), cut by
    ``start``/``end``; ``sentence`` → audio = the sentence wav, no video, no ``start``/``end``
    (the dialog times are kept in ``meta["dialog_span"]``).
    """
    check_choice(group_by, "group_by", GROUP_BY)
    check_choice(media, "media", MEDIA)
    sessions = [d for d in (f"Session{i}" for i in range(1, 6))
                if os.path.isdir(os.path.join(root, d, "dialog", "EmoEvaluation"))]
    if not sessions:
        raise LayoutError(f"no Session1..Session5/dialog/EmoEvaluation/ folder under {root}")
    for session_dir in sessions:
        yield from _session(root, session_dir, group_by, media)
