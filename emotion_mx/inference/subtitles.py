"""SRT / WebVTT subtitles → timed cues, and the text overlapping a time window.

Handles a UTF-8 BOM, ``,`` or ``.`` before the milliseconds, hours-less VTT times (``mm:ss.mmm``),
multi-line cues (joined with a space), cue numbers/identifiers, VTT headers, NOTE/STYLE blocks,
cue settings after the end time, and simple markup (``<i>``, ``{\\an8}``), which is removed.
"""
import dataclasses
import os
import re
from typing import List

from ..errors import EmotionMXError

_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{2})[,.](\d{1,3})"
_TIMING = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}")
_TAGS = re.compile(r"<[^>]*>|\{\\[^}]*\}")


@dataclasses.dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str


def _seconds(h, m, s, ms):
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000.0


def parse_subtitles(text, where="subtitles"):
    """Cues of an SRT or VTT document (a string), sorted by start time."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    cues = []
    for block in re.split(r"\n\s*\n", text):
        lines = [l for l in block.split("\n") if l.strip()]
        for i, line in enumerate(lines):
            m = _TIMING.match(line)
            if m:
                start, end = _seconds(*m.groups()[:4]), _seconds(*m.groups()[4:])
                if end < start:
                    raise EmotionMXError(f"{where}: cue ends before it starts: {line.strip()}")
                body = " ".join(_TAGS.sub("", l).strip() for l in lines[i + 1:])
                body = " ".join(body.split())
                if body:
                    cues.append(Cue(start, end, body))
                break
    return sorted(cues, key=lambda c: (c.start, c.end))


def read_subtitles(path):
    """Cues of an ``.srt`` / ``.vtt`` file; one-line errors for a missing or cue-less file."""
    if not os.path.isfile(path):
        raise EmotionMXError(f"transcript file not found: {path}")
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise EmotionMXError(f"{path}: not UTF-8 text; save the subtitles as UTF-8") from None
    cues = parse_subtitles(text, where=path)
    if not cues:
        raise EmotionMXError(f"{path}: no subtitle cues found (expected SRT or WebVTT 'start --> end' lines)")
    return cues


def text_between(cues: List[Cue], start, end):
    """Text of the cues overlapping ``[start, end)`` (in order, joined by spaces); '' if none."""
    return " ".join(c.text for c in cues if c.start < end and c.end > start)
