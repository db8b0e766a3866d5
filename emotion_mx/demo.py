"""A small SYNTHETIC tri-modal demo corpus, so that ``make demo`` needs no external data.

Each item has speech, its transcript and a face clip, all generated here:

* speech: espeak-ng (through espeakng-loader) speaks the transcript; each class has its own
  rate and pitch range (anger fast/high, sadness slow/low...), each "speaker" its own voice
  variant, plus a little noise;
* text: sentences built from class-typical words mixed with neutral filler;
* face: a drawn face whose mouth curvature, brow angle and eye opening depend on the class,
  with per-item jitter, as a short MJPG ``.avi`` clip.

The differences between classes are learnable but not trivial (overlapping ranges, shared
filler words).  It is not emotional speech: numbers on it say nothing about real data.
"""
import math
import os
import random
import zlib

import numpy as np

from .features.tts import synthesize
from .fileio import atomic_path
from .manifest import Utterance, write_manifest

CLASSES = ("anger", "happiness", "neutral", "sadness")
SPEAKERS = ("en+m1", "en+f2", "en+m3", "en+f4", "en+m7", "en+f1")

# rate (words per minute) and pitch (0-100) ranges per class: overlapping on purpose
PROSODY = {
    "anger": {"rate": (185, 230), "pitch": (55, 80)},
    "happiness": {"rate": (165, 205), "pitch": (60, 90)},
    "neutral": {"rate": (150, 180), "pitch": (40, 60)},
    "sadness": {"rate": (110, 150), "pitch": (20, 45)},
}
WORDS = {
    "anger": ["furious", "hate", "unacceptable", "angry", "outrageous", "stop"],
    "happiness": ["wonderful", "great", "love", "happy", "fantastic", "delighted"],
    "neutral": ["table", "report", "tuesday", "schedule", "meeting", "window"],
    "sadness": ["lonely", "miss", "sorry", "lost", "tears", "gone"],
}
FILLER = ["the", "this", "today", "really", "about", "our", "plan", "was", "i", "think", "it", "is"]
# face geometry per class: mouth curvature (+ smile, - frown), brow tilt, eye opening
FACE = {
    "anger": {"mouth": -0.4, "brow": 0.5, "eye": 0.6},
    "happiness": {"mouth": 0.8, "brow": 0.0, "eye": 0.8},
    "neutral": {"mouth": 0.0, "brow": 0.0, "eye": 1.0},
    "sadness": {"mouth": -0.7, "brow": -0.5, "eye": 0.7},
}


def _sentence(rng, label):
    words = rng.sample(WORDS[label], 2) + rng.sample(FILLER, 3)
    rng.shuffle(words)
    return " ".join(words).capitalize() + "."


def _face_clip(path, rng, label, frames=10, size=96, fps=10):
    import cv2
    g = FACE[label]
    jitter = lambda s: rng.uniform(-s, s)
    mouth, brow, eye = g["mouth"] + jitter(0.35), g["brow"] + jitter(0.3), g["eye"] + jitter(0.25)
    skin = int(rng.uniform(150, 220))
    with atomic_path(path) as tmp:
        vw = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"MJPG"), fps, (size, size))
        for t in range(frames):
            img = np.full((size, size, 3), 40, np.uint8)
            cx, cy = size // 2 + int(jitter(3)), size // 2 + int(jitter(3))
            talk = 0.15 * math.sin(t * 1.3)                  # mouth moves while speaking
            cv2.ellipse(img, (cx, cy), (30, 38), 0, 0, 360, (skin, skin, skin), -1)
            for side in (-1, 1):
                ex, ey = cx + side * 12, cy - 8
                cv2.ellipse(img, (ex, ey), (5, max(1, int(4 * eye))), 0, 0, 360, (20, 20, 20), -1)
                y0 = ey - 9 - int(side * brow * 3)
                y1 = ey - 9 + int(side * brow * 3)
                cv2.line(img, (ex - 6, y0), (ex + 6, y1), (30, 30, 30), 2)
            my = cy + 18
            curve = int(10 * mouth)
            pts = np.array([[cx - 12, my], [cx, my + curve], [cx + 12, my]], np.int32)
            cv2.polylines(img, [pts], False, (30, 30, 120), 2)
            cv2.ellipse(img, (cx, my + curve // 2), (5, max(1, int(6 * abs(talk)))), 0, 0, 360, (20, 20, 80), -1)
            vw.write(img)
        vw.release()


def _write_wav(path, wave, sr):
    import soundfile as sf
    with atomic_path(path) as tmp:
        sf.write(tmp, wave, sr, subtype="PCM_16", format="WAV")


def make_demo_corpus(out_dir, per_class_per_speaker=4, seed=0, speakers=SPEAKERS, classes=CLASSES):
    """Write the demo corpus into ``out_dir`` (``manifest.jsonl`` + ``audio/`` + ``video/``).

    Returns the list of utterances.  Existing media files are kept (re-running is cheap).
    """
    items = []
    for s_idx, voice in enumerate(speakers):
        spk = f"spk{s_idx + 1:02d}"
        for label in classes:
            for k in range(per_class_per_speaker):
                uid = f"{spk}_{label}_{k:02d}"
                rng = random.Random(f"{seed}/{uid}")          # per item: re-runs are identical
                text = _sentence(rng, label)
                p = PROSODY[label]
                rate, pitch = int(rng.uniform(*p["rate"])), int(rng.uniform(*p["pitch"]))
                wav_rel, vid_rel = f"audio/{uid}.wav", f"video/{uid}.avi"
                wav_path, vid_path = os.path.join(out_dir, wav_rel), os.path.join(out_dir, vid_rel)
                if not os.path.exists(wav_path):
                    wave, sr, _ = synthesize(text, voice=voice, rate=rate, pitch=pitch)
                    nrng = np.random.default_rng(zlib.crc32(f"{seed}/{uid}".encode()))
                    wave = wave + nrng.normal(0, 0.003, size=wave.shape).astype(np.float32)
                    _write_wav(wav_path, np.clip(wave, -1, 1), sr)
                if not os.path.exists(vid_path):
                    _face_clip(vid_path, random.Random(f"{seed}/{uid}/face"), label)
                items.append(Utterance(id=uid, label=label, group=spk, audio=wav_rel, video=vid_rel,
                                       text=text, lang="en", meta={"synthetic": True}))
    write_manifest(os.path.join(out_dir, "manifest.jsonl"), items)
    return items


def predict_with_api(export_dir, corpus_dir, item_id="spk06_anger_00"):
    """The demo's last step: one corpus item (speech, face clip, transcript) through the Python
    API; returns ``(item, EmotionResult)``."""
    from . import EmotionRecognizer
    from .manifest import read_manifest
    item = next(it for it in read_manifest(os.path.join(corpus_dir, "manifest.jsonl")) if it.id == item_id)
    rec = EmotionRecognizer.load(export_dir)
    return item, rec.predict(audio=os.path.join(corpus_dir, item.audio), video=os.path.join(corpus_dir, item.video),
                             text=item.text)
