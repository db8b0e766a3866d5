"""The model zoo: ready, trained emotion models (``speech``, ``text``, ``face``, ``multimodal``).

    from emotion_mx import EmotionRecognizer
    rec = EmotionRecognizer.pretrained("speech")          # or EmotionRecognizer.load("zoo:speech")
    rec.predict(audio="clip.wav").label

:mod:`.cards` says what each model is and holds the measured half of its card (shipped JSON);
:mod:`.assemble` builds its full graph from the weight packages and the shipped heads once and
caches it as an ordinary exported model; :mod:`.recipe` retrains a head from the shared data
(``emotion-mx zoo build NAME``).  Importing this package imports MXNet (the assembly needs it).
"""
from .assemble import cache_key, ensure_exported, zoo_spec
from .cards import CARDS, ZOO_LABELS, ZOO_VERSION, get_card, list_zoo, read_measured

__all__ = ["ensure_exported", "zoo_spec", "cache_key", "CARDS", "ZOO_LABELS", "ZOO_VERSION", "get_card",
           "list_zoo", "read_measured", "model_for_inputs"]


def model_for_inputs(arguments):
    """The zoo model that fits the given ``predict`` arguments (``audio``, ``text``, ``image``,
    ``video``): the unimodal model for one modality, else the multimodal one."""
    mods = {{"audio": "audio", "text": "text", "image": "video", "video": "video"}[a] for a in arguments}
    if len(mods) == 1:
        return {"audio": "speech", "text": "text", "video": "face"}[mods.pop()]
    return "multimodal"
