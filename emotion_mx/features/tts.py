"""Speech synthesis with word timings: libespeak-ng (bundled by ``espeakng-loader``) via ctypes.

``synthesize(text, voice)`` returns the waveform, its sample rate and, for every word espeak
spoke, the word as it appears in ``text`` and its start in seconds.  The word text is cut
from the input with the event's ``text_position``/``length``, so words map back onto
transcript tokens (a number such as ``175`` is one word even though espeak says three).

espeak-ng keeps global state and is not re-entrant, and that state carries over from one
synthesis to the next (measured: the same sentence came out 15 samples longer and its word
events 1 ms later after other sentences), which made builds depend on which items a worker
had processed before.  So every synthesis loads the library afresh (``dlopen``), initialises
it, speaks, and unloads it (``dlclose``): the result depends only on the arguments.  This costs
about 10 ms per call.  Every synthesis runs under one lock.
"""
import ctypes
import os
import threading
import unicodedata

import numpy as np

from ..errors import BadItem

# espeak_AUDIO_OUTPUT / espeak_EVENT_TYPE / espeak_PARAMETER / flags, from speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_PARAM_RATE = 1
_PARAM_PITCH = 3
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EE_OK = 0

DEFAULT_RATE = 175   # words per minute (espeak's default)
DEFAULT_PITCH = 50   # 0..100 (espeak's default)
MIN_RATE, MAX_RATE = 80, 450

# Manifest ``lang`` codes (and common aliases) -> espeak-ng voice names.
LANG_VOICES = {
    "en": "en", "eng": "en", "en-us": "en-us", "en-gb": "en",
    "de": "de", "deu": "de", "ger": "de",
    "cmn": "cmn", "zh": "cmn", "zho": "cmn", "chi": "cmn", "zh-cn": "cmn",
    "fr": "fr", "es": "es", "it": "it",
}


class _Event(ctypes.Structure):
    class _Id(ctypes.Union):
        _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p),
                    ("string", ctypes.c_char * 8)]

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),    # 1-based character index into the input text
        ("length", ctypes.c_int),           # characters
        ("audio_position", ctypes.c_int),   # ms from the start of this synthesis
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _Id),
    ]


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class _Engine:
    """The process's libespeak-ng handle; holds the callback's Python-side buffers."""

    def __init__(self):
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._declare(self.lib)
        data_path = espeakng_loader.get_data_path().encode("utf-8")
        rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, 0)
        if rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed ({rate}); data path {data_path!r}")
        self.sample_rate = int(rate)
        self.chunks = []   # int16 arrays of the synthesis in progress
        self.events = []   # (text_position, length, audio_position_ms) of word events
        self._callback = _SynthCallback(self._on_synth)   # keep a reference: C holds it
        self.lib.espeak_SetSynthCallback(self._callback)

    @staticmethod
    def _declare(lib):
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.POINTER(ctypes.c_uint),
                                     ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Terminate.argtypes = []
        lib.espeak_Terminate.restype = ctypes.c_int

    def _on_synth(self, wav, num_samples, events):
        if num_samples > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            e = events[i]
            if e.type == _EVENT_WORD:
                self.events.append((e.text_position, e.length, e.audio_position))
            i += 1
        return 0   # 0 = continue synthesis

    def close(self):
        """Terminate espeak-ng and unload the library, so the next engine starts from scratch."""
        import _ctypes
        self.lib.espeak_Terminate()
        _ctypes.dlclose(self.lib._handle)
        self.lib = None

    def set_voice(self, voice):
        # Set on every call, even when unchanged: it also resets state that otherwise leaks
        # from the previous synthesis (measured: word events 11 ms later after another voice).
        if self.lib.espeak_SetVoiceByName(voice.encode("utf-8")) != _EE_OK:
            raise BadItem(f"unknown espeak-ng voice {voice!r} (try 'en', 'de', 'cmn', "
                          f"or a variant such as 'en+f3')")

    def synth(self, text, voice, rate, pitch):
        self.set_voice(voice)
        # Parameters persist between calls: always set both.
        self.lib.espeak_SetParameter(_PARAM_RATE, rate, 0)
        self.lib.espeak_SetParameter(_PARAM_PITCH, pitch, 0)
        self.chunks, self.events = [], []
        data = text.encode("utf-8") + b"\0"
        err = self.lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if err != _EE_OK:
            raise BadItem(f"espeak_Synth failed with code {err} for voice {voice!r}")
        wave = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)
        return wave, list(self.events)


_lock = threading.Lock()


def _reset_after_fork():
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _synth_fresh(text, voice, rate, pitch):
    """One synthesis on a freshly loaded library; call with ``_lock`` held."""
    engine = _Engine()
    try:
        pcm, events = engine.synth(text, voice, rate, pitch)
        return pcm, events, engine.sample_rate
    finally:
        engine.close()


def voice_for_lang(lang, default="en"):
    """espeak-ng voice for a manifest ``lang`` code (``'de'`` -> ``'de'``, ``'zh'`` -> ``'cmn'``)."""
    if not lang:
        return default
    key = str(lang).strip().lower().replace("_", "-")
    if key in LANG_VOICES:
        return LANG_VOICES[key]
    return LANG_VOICES.get(key.split("-")[0], key)


def _clamp(value, default, lo, hi):
    return default if value is None else int(min(max(int(round(value)), lo), hi))


def _is_separator(ch):
    return unicodedata.category(ch)[0] in "PZC"   # punctuation, spaces, controls


def _strip_punct(span):
    """``span`` without surrounding whitespace/punctuation (kept whole if that leaves nothing)."""
    first, last = 0, len(span)
    while first < last and _is_separator(span[first]):
        first += 1
    while last > first and _is_separator(span[last - 1]):
        last -= 1
    return span[first:last] or span.strip()


def _event_words(text, events, sample_rate, num_samples):
    """[(word, start_s)] from word events ``(text_position 1-based, length, ms)``.

    A word is the text from its event's position up to the next word's position, without
    surrounding punctuation.  espeak's ``length`` is not trusted for the cut (for ``cmn`` it
    reports 1 for a two-character dictionary word), only to merge the extra events of an
    expanded token (``175`` -> "one hundred and seventy five" gives three events inside it).
    """
    duration = num_samples / float(sample_rate)
    kept = []   # (first char index, start_s)
    covered = -1
    for pos, length, ms in sorted(events, key=lambda e: (e[2], e[0])):
        first = max(pos - 1, 0)
        if first < covered or first >= len(text):
            continue   # a further event inside an already-taken token
        kept.append((first, min(ms / 1000.0, duration)))
        covered = first + max(length, 1)
    bounds = [f for f, _ in kept[1:]] + [len(text)]
    words = [(_strip_punct(text[f:b]), t) for (f, t), b in zip(kept, bounds)]
    return [(w, t) for w, t in words if w]


def synthesize(text, voice="en", rate=None, pitch=None):
    """Speak ``text`` with an espeak-ng voice.

    Args:
        text: the sentence(s); UTF-8 text in the voice's language.
        voice: espeak-ng voice name (``'en'``, ``'de'``, ``'cmn'``, ``'en-us'``, variants
            such as ``'en+f3'``) or a manifest language code (see :func:`voice_for_lang`).
        rate: words per minute (espeak default 175; clamped to 80..450).
        pitch: 0..100 (default 50).

    Returns:
        ``(wave (S,) float32 in [-1, 1], sample_rate int, words)`` where ``words`` is a list of
        ``(word, start_seconds)`` in speaking order, the word as written in ``text``.

    Raises:
        BadItem: empty text, unknown voice, or no audio produced.
    """
    if text is None or not str(text).strip():
        raise BadItem("empty transcript: nothing to synthesize")
    text = " ".join(str(text).split())   # newlines/tabs would split sentences oddly
    if not voice or not str(voice).strip():
        raise BadItem("no espeak-ng voice given")
    voice = str(voice).strip()
    name = voice if "+" in voice else voice_for_lang(voice, default=voice)
    rate = _clamp(rate, DEFAULT_RATE, MIN_RATE, MAX_RATE)
    pitch = _clamp(pitch, DEFAULT_PITCH, 0, 100)
    with _lock:
        pcm, events, sample_rate = _synth_fresh(text, name, rate, pitch)
    if pcm.size == 0:
        raise BadItem(f"espeak-ng produced no audio for {text[:40]!r} with voice {name!r}")
    wave = (pcm.astype(np.float32) / 32768.0)   # (S,)
    return wave, sample_rate, _event_words(text, events, sample_rate, pcm.size)
