"""EmoDB, the Berlin Emotional Speech Database (Burkhardt et al. 2005).

Layout: ``wav/03a01Fa.wav``: speaker (2 digits), sentence code (3), emotion letter (1),
version letter (1); optional ``labels.csv`` (columns ``file, speaker, sentence, text_de,
emotion_code, ...``) as in our processed copy.  Raw labels are the emotion letters
(W L E A F T N, see :data:`~emotion_mx.corpora.labels.DEFAULT_LABELS`).
"""
import os
import re

from ..manifest import Utterance
from .common import csv_dicts, files, rel, require_dir
from .labels import DEFAULT_LABELS
from .registry import Skip, register_reader

EMOTION_CODES = frozenset(DEFAULT_LABELS["emodb"]["map"])

# The ten sentences, keyed by sentence code.
SENTENCES = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}

# Speaker code → (gender, age) from the corpus documentation.
SPEAKERS = {
    "03": ("male", 31), "08": ("female", 34), "09": ("female", 21), "10": ("male", 32),
    "11": ("male", 26), "12": ("male", 30), "13": ("female", 32), "14": ("female", 35),
    "15": ("male", 25), "16": ("female", 31),
}

NAME = re.compile(r"^(?P<speaker>\d\d)(?P<sentence>[ab]\d\d)(?P<emotion>[A-Z])(?P<version>[a-z])\.wav$")


def _item(file_name, speaker, sentence, emotion, version, text=None):
    gender, age = SPEAKERS.get(speaker, (None, None))
    meta = {"sentence": sentence, "version": version}
    if gender:
        meta.update(gender=gender, age=age)
    return Utterance(id=os.path.splitext(file_name)[0], label=emotion, group=speaker,
                     audio=rel("wav", file_name), text=text or SENTENCES.get(sentence), lang="de", meta=meta)


def _parse(file_name):
    m = NAME.match(file_name)
    if not m or m["emotion"] not in EMOTION_CODES:
        return Skip(rel("wav", file_name), "file name is not speaker(2) sentence(3) emotion(W L E A F T N) "
                                           "version(1), e.g. 03a01Fa.wav")
    return _item(file_name, **m.groupdict())


def _from_labels_csv(path):
    rows = csv_dicts(path)
    for n, row in enumerate(rows, 2):
        file_path = (row.get("file") or "").strip()
        parsed = _parse(os.path.basename(file_path)) if file_path.startswith("wav/") else None
        if not isinstance(parsed, Utterance):
            yield Skip(f"labels.csv:{n}", f"bad row: 'file' must be wav/<name> with an EmoDB name, got {file_path!r}")
            continue
        code, speaker = (row.get("emotion_code") or "").strip(), (row.get("speaker") or "").strip()
        if code and code != parsed.label or speaker and speaker != parsed.group:
            yield Skip(f"labels.csv:{n}", f"emotion_code/speaker columns disagree with the file name {file_path}")
            continue
        text = (row.get("text_de") or "").strip()
        yield parsed.replace(text=text) if text else parsed


@register_reader("emodb", layout="wav/03a01Fa.wav (speaker, sentence, emotion W L E A F T N, version); "
                                  "optional labels.csv")
def read_emodb(root, *, use_labels_csv=True):
    """EmoDB items; ``labels.csv`` is used when present (and ``use_labels_csv``), else file names."""
    wav_dir = require_dir(root, "wav", example="wav/03a01Fa.wav")
    labels_csv = os.path.join(root, "labels.csv")
    if use_labels_csv and os.path.isfile(labels_csv):
        yield from _from_labels_csv(labels_csv)
    else:
        yield from map(_parse, files(wav_dir, (".wav",)))
