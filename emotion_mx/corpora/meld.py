"""MELD (Poria et al. 2019): multi-party dialogues from the TV series Friends.

Layout (``MELD.Raw``, with ``train.tar.gz`` etc. unpacked in place or into ``train/``...)::

    train_sent_emo.csv   dev_sent_emo.csv   test_sent_emo.csv
    train_splits/dia0_utt0.mp4   dev_splits_complete/...   output_repeated_splits_test/...

CSV columns: Sr No., Utterance, Speaker, Emotion, Sentiment, Dialogue_ID, Utterance_ID,
Season, Episode, StartTime, EndTime.  Each clip is one utterance, used as video and audio;
StartTime/EndTime (episode time) are kept in ``meta``.  The official split comes from the CSV.
Transcripts only (no clip folders): build with ``configs/datasets/meld_text.yaml`` (audio, faces
and alignment off); the reader says so in the log when it finds no clip folder.
"""
import logging
import os

from ..manifest import Utterance
from .common import csv_dicts, rel
from .registry import LayoutError, Skip, register_reader

# split → (csv file, clip folder)
SPLITS = {
    "train": ("train_sent_emo.csv", "train_splits"),
    "valid": ("dev_sent_emo.csv", "dev_splits_complete"),
    "test": ("test_sent_emo.csv", "output_repeated_splits_test"),
}
COLUMNS = ("Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID")
TEXT_ONLY_CONFIG = "configs/datasets/meld_text.yaml"
log = logging.getLogger(__name__)

# The CSVs contain raw cp1252 punctuation (U+0080..U+009F code points): map them to Unicode.
_CP1252 = {c: bytes([c]).decode("cp1252", errors="ignore") or None for c in range(0x80, 0xA0)}
_CP1252[0xA0] = " "


def _clip_dir(root, split, folder):
    """The clip folder: directly under root, or under the split's own folder (train/, dev/, test/)."""
    for candidate in (folder, rel({"valid": "dev"}.get(split, split), folder)):
        if os.path.isdir(os.path.join(root, candidate)):
            return candidate
    return folder


def _split(root, split, csv_name, folder):
    clips = _clip_dir(root, split, folder)
    for n, row in enumerate(csv_dicts(os.path.join(root, csv_name)), 2):
        where = f"{csv_name}:{n}"
        missing = [c for c in COLUMNS if not (row.get(c) or "").strip()]
        if missing:
            yield Skip(where, f"bad row: no '{missing[0]}'")
            continue
        dia, utt = row["Dialogue_ID"].strip(), row["Utterance_ID"].strip()
        if not (dia.isdigit() and utt.isdigit()):
            yield Skip(where, f"bad row: Dialogue_ID/Utterance_ID must be integers, got {dia!r}/{utt!r}")
            continue
        clip = rel(clips, f"dia{dia}_utt{utt}.mp4")
        meta = {"dialogue": int(dia), "utterance": int(utt)}
        for key, col in (("sentiment", "Sentiment"), ("season", "Season"), ("episode", "Episode"),
                         ("episode_start", "StartTime"), ("episode_end", "EndTime")):
            if (row.get(col) or "").strip():
                meta[key] = row[col].strip()
        yield Utterance(id=f"{split}_dia{dia}_utt{utt}", label=row["Emotion"].strip(), group=row["Speaker"].strip(),
                        split=split, audio=clip, video=clip, text=row["Utterance"].translate(_CP1252).strip(),
                        lang="en", meta=meta)


@register_reader("meld", layout="{train,dev,test}_sent_emo.csv with train_splits/, dev_splits_complete/, "
                                 "output_repeated_splits_test/ clips dia{D}_utt{U}.mp4")
def read_meld(root):
    """MELD utterances with the official split (raw labels: neutral joy sadness anger surprise fear disgust)."""
    present = {s: v for s, v in SPLITS.items() if os.path.isfile(os.path.join(root, v[0]))}
    if not present:
        raise LayoutError(f"no train_sent_emo.csv, dev_sent_emo.csv or test_sent_emo.csv under {root}")
    if not any(os.path.isdir(os.path.join(root, _clip_dir(root, s, v[1]))) for s, v in present.items()):
        log.info("no MELD clip folder under %s (%s): for the transcripts alone, build with --config %s",
                 root, ", ".join(v[1] for v in present.values()), TEXT_ONLY_CONFIG)
    for split, (csv_name, folder) in present.items():
        yield from _split(root, split, csv_name, folder)
