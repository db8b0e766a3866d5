"""The zoo's cards: what each ready model is (data), and the measured half each build writes.

A card has two halves:

* :class:`ZooCard`, here, as data: the model's modalities, the encoders it may use, the corpora
  of its recipe (shipped dataset configs under ``configs/zoo/``), its intended use and limits;
* ``emotion_mx/zoo/cards/<name>.json``, written by ``emotion-mx zoo build NAME``: the chosen
  encoder and head, every measured figure with the command that printed it, the data counts.
  Its head parameters are ``emotion_mx/zoo/heads/<name>.npz`` (plain arrays, read with
  ``allow_pickle=False``).  Both ship inside the package.

Every zoo model predicts over :data:`ZOO_LABELS` (FER2013's seven classes, in its order).
"""
import os
from dataclasses import dataclass
from typing import Mapping, Optional, Tuple

from ..errors import EmotionMXError
from ..fileio import read_json

__all__ = ["ZOO_LABELS", "ZOO_VERSION", "CorpusRecipe", "ZooCard", "CARDS", "get_card", "list_zoo",
           "card_path", "head_path", "read_measured", "MODALITY_OF_PART"]

ZOO_LABELS = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")
ZOO_VERSION = "1.0"
# bump whenever emotion_mx/models/zoo.py computes something else: cached assemblies are then rebuilt
GRAPH_REVISION = 2
HERE = os.path.dirname(os.path.abspath(__file__))
# a unimodal zoo model's modality (the multimodal model is made of these parts)
MODALITY_OF_PART = {"speech": "audio", "text": "text", "face": "video"}


@dataclass(frozen=True)
class CorpusRecipe:
    """One corpus of a recipe: the store ``name`` built from ``EMOTION_MX_DATA/<data>`` with the
    shipped dataset config ``configs/zoo/<name>.yaml``; ``labels``: what its labels become."""
    name: str
    data: str
    labels: str
    licence: str
    official_split: bool = False      # its test split is a published one: never trained on


@dataclass(frozen=True)
class ZooCard:
    name: str
    summary: str
    parts: Tuple[str, ...]                    # unimodal zoo models it is made of (itself if unimodal)
    encoders: Tuple[str, ...] = ()            # candidate encoders, chosen on validation by the build
    corpora: Tuple[CorpusRecipe, ...] = ()    # training (and evaluation) data of the head
    evaluation: Tuple[CorpusRecipe, ...] = ()  # evaluation-only data
    max_audio_seconds: float = 8.0
    max_tokens: int = 128
    num_frames: int = 8
    limits: str = ""

    @property
    def modalities(self):
        return tuple(m for m in ("audio", "text", "video") if m in {MODALITY_OF_PART[p] for p in self.parts})


_RESEARCH = ("The training corpora are licensed for non-commercial research; the trained head "
             "inherits that restriction: check the corpus licences before any commercial use.")
_EMODB = CorpusRecipe("emodb", "emodb", "W L E A F T N -> anger, (boredom dropped), disgust, fear, happiness, "
                      "sadness, neutral", "free for research (Burkhardt et al. 2005)")
_RAVDESS = CorpusRecipe("ravdess", "ravdess", "calm -> neutral; angry, fearful, happy, sad, surprised -> "
                        "anger, fear, happiness, sadness, surprise; neutral, disgust kept",
                        "CC BY-NC-SA 4.0 (Livingstone and Russo 2018)")
_GOEMOTIONS = CorpusRecipe("goemotions", "goemotions", "Ekman labels; joy -> happiness; rows with several "
                           "labels dropped", "CC BY 4.0 (Demszky et al. 2020)", official_split=True)
_ISEAR = CorpusRecipe("isear", "isear", "joy -> happiness; shame and guilt dropped",
                      "free for research (Scherer and Wallbott)")
_IEMOCAP = CorpusRecipe("iemocap_text", "iemocap_text", "excited -> happiness; frustration dropped; "
                        "train/valid split only (Session 5 is the test set)",
                        "IEMOCAP research licence (Busso et al. 2008)", official_split=True)
_CKPLUS = CorpusRecipe("ckplus48", "ckplus48", "happy -> happiness; contempt dropped; no neutral",
                       "non-commercial research, no redistribution (Lucey et al. 2010)")

CARDS = {c.name: c for c in (
    ZooCard("speech", "Speech emotion from a Whisper encoder (frozen) and a layer-weighted head trained on "
            "EmoDB (German) and RAVDESS (English) acted speech.", parts=("speech",),
            encoders=("whisper_tiny_en", "whisper_base"), corpora=(_EMODB, _RAVDESS),
            limits="Acted, read speech of two languages and 34 speakers: expect lower accuracy on spontaneous, "
                   "noisy or other-language speech; clips are cut at 8 s. " + _RESEARCH),
    ZooCard("text", "Text emotion from all-MiniLM-L6-v2 (frozen) and a layer-weighted head trained on "
            "GoEmotions (Reddit), ISEAR (self-reports) and IEMOCAP transcripts (dialogue).", parts=("text",),
            encoders=("minilm_l6",), corpora=(_GOEMOTIONS, _ISEAR, _IEMOCAP),
            limits="English only; single utterances without dialogue context; up to 128 WordPiece tokens. "
                   + _RESEARCH),
    ZooCard("face", "Facial expression from fer's FER2013 mini-Xception (frozen): its own FER2013 classifier "
            "says whether a face is neutral, a head adapted on CK+48 (posed, lab faces) says which expression.",
            parts=("face",), encoders=("fer_mini_xception",), corpora=(_CKPLUS,),
            limits="64x64 grayscale crops of the largest detected face (OpenCV Haar cascade); frontal, "
                   "well-lit faces; the expression head saw 118 posing subjects, FER2013 is web imagery with "
                   "label noise. " + _RESEARCH),
    ZooCard("multimodal", "Any subset of speech, transcript and face: the speech, text and face experts "
            "fused as a product of experts (log-probabilities added over the modalities present).",
            parts=("speech", "text", "face"),
            limits="The three experts are trained on different corpora; no corpus here has aligned audio, "
                   "text and face of one moment, so fusion is measured on items paired by label. " + _RESEARCH),
)}


def list_zoo():
    return sorted(CARDS)


def get_card(name):
    if name not in CARDS:
        raise EmotionMXError(f"unknown zoo model {name!r}; choose from {', '.join(list_zoo())} (emotion-mx zoo list)")
    return CARDS[name]


def card_path(name, root=None):
    return os.path.join(root or os.path.join(HERE, "cards"), f"{name}.json")


def head_path(name, root=None):
    return os.path.join(root or os.path.join(HERE, "heads"), f"{name}.npz")


def read_measured(name, root=None) -> Optional[Mapping]:
    """The measured half of a card (``cards/<name>.json``), or None when it was never built."""
    path = card_path(name, root)
    if not os.path.isfile(path):
        return None
    try:
        return read_json(path)
    except ValueError as e:
        raise EmotionMXError(f"{path}: not valid JSON ({e}); reinstall emotion_mx or run `emotion-mx zoo build {name}`") from None
