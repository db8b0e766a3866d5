"""Word timings for a recording by TTS + DTW, pooling over word spans, IEMOCAP alignments.

Method (:func:`align_words`): speak the transcript with espeak-ng (which reports where each
word starts), compute the same log-mel features on the synthetic and the recorded audio,
warp one onto the other with ``librosa.sequence.dtw`` (cosine distance on per-utterance
mean/variance-normalised log-mel, leading/trailing silence trimmed), and carry every
synthetic word boundary through the warping path into the recording.
"""
import collections
import os
import re

import numpy as np
import librosa

from ..errors import BadItem
from .audio import logmel
from .tts import synthesize

WordSpan = collections.namedtuple("WordSpan", ["word", "start", "end"])
WordSpan.__doc__ = "One word of a transcript and where it is spoken (seconds)."

TRIM_TOP_DB = 35.0      # silence = this many dB below the utterance's loudest frame...
NOISE_MARGIN_DB = 6.0   # ...or less than this above a noisy recording's noise floor...
MIN_TOP_DB = 15.0       # ...but never trim anything within this many dB of the peak
_TRIM_FRAME, _TRIM_HOP = 512, 128
MAX_FMAX_HZ = 8000.0    # keep both feature sets on the same band whatever the sample rate
MIN_SAMPLES = 400       # shorter than this cannot give two 25 ms frames


# ----------------------------------------------------------------------------- features

def _features(wave, sample_rate, hop_ms, n_mels):
    """Per-utterance mean/variance-normalised log-mel, ``(T, n_mels)``."""
    fmax = min(MAX_FMAX_HZ, sample_rate / 2.0)
    feats = logmel(wave, sample_rate, n_mels=n_mels, hop_ms=hop_ms, fmax=fmax)   # (T, n_mels)
    feats = feats - feats.mean(axis=0, keepdims=True)
    return feats / (feats.std(axis=0, keepdims=True) + 1e-5)


def _frame_db(wave):
    """Frame loudness in dB below the loudest frame, ``(F,)`` (hop ``_TRIM_HOP`` samples)."""
    rms = librosa.feature.rms(y=wave, frame_length=_TRIM_FRAME, hop_length=_TRIM_HOP)[0]
    return librosa.amplitude_to_db(rms, ref=np.max, amin=1e-10)


def _silence_threshold_db(wave):
    """Loudness (dB re. peak) below which a frame of ``wave`` counts as silence.

    ``-TRIM_TOP_DB`` for clean audio; above a noisy recording's noise floor (its 5th
    percentile frame) when that floor is higher, capped at ``-MIN_TOP_DB``.
    """
    floor = np.percentile(_frame_db(wave), 5)
    return float(min(max(-TRIM_TOP_DB, floor + NOISE_MARGIN_DB), -MIN_TOP_DB))


def _speech_bounds(wave, threshold_db=-TRIM_TOP_DB):
    """``(first, last)`` sample of the part of ``wave`` louder than ``threshold_db`` re. peak
    (the whole wave if that part is too short)."""
    loud = np.flatnonzero(_frame_db(wave) > threshold_db)
    if loud.size == 0:
        return 0, len(wave)
    first = int(librosa.frames_to_samples(loud[0], hop_length=_TRIM_HOP))
    last = min(len(wave), int(librosa.frames_to_samples(loud[-1] + 1, hop_length=_TRIM_HOP)))
    if last - first < MIN_SAMPLES:
        return 0, len(wave)
    return first, last


def _check_wave(wave, sample_rate):
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)   # (S,)
    if sample_rate is None or int(sample_rate) <= 0:
        raise BadItem(f"invalid sample rate {sample_rate!r}")
    if wave.size < MIN_SAMPLES or not np.isfinite(wave).all() or not np.abs(wave).max() > 0:
        raise BadItem("recording is empty, silent or not finite: cannot align words")
    return wave, int(sample_rate)


# ----------------------------------------------------------------------------- synthetic side

def tts_word_spans(text, voice="en", rate=None, pitch=None, sample_rate=None):
    """Speak ``text``; return ``(wave (S,), sample_rate, [WordSpan])`` with exact word timings.

    espeak reports where each word starts; a word's span is then narrowed to the audible
    part of ``[its start, the next word's start)`` (so a pause at a comma, or the silence
    espeak puts before a word, is not counted as part of it); the last word stops at the
    end of speech.  ``sample_rate`` resamples the wave (default: espeak's 22.05 kHz).
    """
    wave, syn_sr, words = synthesize(text, voice, rate=rate, pitch=pitch)
    if not words:
        raise BadItem(f"espeak-ng reported no words for {text[:40]!r} (voice {voice!r})")
    sample_rate = int(sample_rate or syn_sr)
    if syn_sr != sample_rate:
        wave = librosa.resample(wave, orig_sr=syn_sr, target_sr=sample_rate)
    starts = np.array([s for _, s in words])                                  # (L,)
    stops = np.append(starts[1:], _speech_bounds(wave)[1] / float(sample_rate))
    bounds = _audible_parts(wave, sample_rate, starts, stops)                  # (L, 2)
    return wave, sample_rate, [WordSpan(w, float(a), float(b))
                               for (w, _), (a, b) in zip(words, bounds)]


def _audible_parts(wave, sample_rate, starts, stops, top_db=TRIM_TOP_DB):
    """``(L, 2)``: the audible part (louder than ``-top_db`` re. the wave's loudest frame) of
    each ``[start, stop)``; the interval unchanged where none of it is audible."""
    db = _frame_db(wave)                                                       # (F,)
    centres = librosa.frames_to_time(np.arange(len(db)), sr=sample_rate, hop_length=_TRIM_HOP)
    hop_s = _TRIM_HOP / float(sample_rate)
    out = np.stack([starts, stops], axis=1).astype(np.float64)                 # (L, 2)
    for i, (start, stop) in enumerate(out.copy()):
        loud = centres[(centres >= start) & (centres < stop) & (db > -top_db)]
        if loud.size:
            out[i] = loud[0], min(loud[-1] + hop_s, stop)
    return out


# ----------------------------------------------------------------------------- warping

def _warp(syn_feats, rec_feats):
    """DTW path as a monotone map: for each synthetic frame i, the recording frame (float).

    ``syn_feats`` (Ts, D), ``rec_feats`` (Tr, D) -> ``(Ts,)`` centre of the recording frames
    matched to each synthetic frame.
    """
    _, path = librosa.sequence.dtw(X=syn_feats.T, Y=rec_feats.T, metric="cosine")  # path (N, 2) reversed
    path = path[::-1]
    counts = np.bincount(path[:, 0], minlength=len(syn_feats))                      # (Ts,)
    sums = np.bincount(path[:, 0], weights=path[:, 1], minlength=len(syn_feats))    # (Ts,)
    return sums / np.maximum(counts, 1)


def _map_times(times, frame_map, hop_s):
    """Carry synthetic times (s, relative to the synthetic frames) through ``frame_map``."""
    frames = np.arange(len(frame_map), dtype=np.float64)
    return np.interp(np.asarray(times) / hop_s, frames, frame_map) * hop_s


def align_words(wave, sample_rate, text, voice="en", hop_ms=10.0, n_mels=64):
    """Word spans of ``text`` in the recording ``wave`` by TTS + DTW.

    Args:
        wave: recording, ``(S,)`` float.
        sample_rate: its sample rate (Hz).
        text: its transcript (one sentence or a few).
        voice: espeak-ng voice or manifest language code (``'en'``, ``'de'``, ``'cmn'``...).
        hop_ms, n_mels: log-mel settings used for both signals.

    Returns:
        list of :class:`WordSpan` (word as written in ``text``; start/end seconds in the
        recording), in speaking order, inside ``[0, duration]``, starts and ends
        non-decreasing.

    Raises:
        BadItem: empty transcript, unknown voice, empty/silent recording.
    """
    wave, sample_rate = _check_wave(wave, sample_rate)
    syn, _, syn_spans = tts_word_spans(text, voice, sample_rate=sample_rate)
    hop_s = hop_ms / 1000.0
    threshold_db = _silence_threshold_db(wave)   # same loudness cut on both: same onsets lost
    syn0, syn1 = _speech_bounds(syn, threshold_db)
    rec0, rec1 = _speech_bounds(wave, threshold_db)
    syn_feats = _features(syn[syn0:syn1], sample_rate, hop_ms, n_mels)    # (Ts, n_mels)
    rec_feats = _features(wave[rec0:rec1], sample_rate, hop_ms, n_mels)   # (Tr, n_mels)
    frame_map = _warp(syn_feats, rec_feats)                                # (Ts,)
    offset_syn, offset_rec = syn0 / float(sample_rate), rec0 / float(sample_rate)
    bounds = np.array([[s.start, s.end] for s in syn_spans]) - offset_syn  # (L, 2)
    mapped = _map_times(bounds.ravel(), frame_map, hop_s).reshape(-1, 2) + offset_rec
    return _tidy_spans([s.word for s in syn_spans], mapped, len(wave) / float(sample_rate))


def _tidy_spans(words, bounds, duration):
    """Clip to ``[0, duration]`` and make starts/ends non-decreasing with start <= end."""
    bounds = np.clip(bounds, 0.0, duration)                       # (L, 2)
    starts = np.maximum.accumulate(bounds[:, 0])
    ends = np.maximum.accumulate(np.maximum(bounds[:, 1], starts))
    return [WordSpan(w, float(s), float(e)) for w, s, e in zip(words, starts, ends)]


def proportional_spans(text_words, duration):
    """Naive baseline: words share ``[0, duration]`` in proportion to their character count."""
    lengths = np.array([max(len(w), 1) for w in text_words], dtype=np.float64)
    edges = np.concatenate([[0.0], np.cumsum(lengths)]) / lengths.sum() * duration
    return [WordSpan(w, float(a), float(b)) for w, a, b in zip(text_words, edges[:-1], edges[1:])]


# ----------------------------------------------------------------------------- pooling

def pool_over_spans(feats, times, spans):
    """Mean of the frames whose time lies in each span.

    Args:
        feats: ``(T, D)`` frame features (audio frames, or sparse face frames).
        times: ``(T,)`` time (s) of each frame.
        spans: ``(L, 2)`` ``[start, end]`` seconds (WordSpans also accepted).

    Returns:
        ``(L, D)`` float32. A frame belongs to a span if ``start <= t < end`` (``t == end``
        too for zero-length spans); a span with no frame takes the frame nearest its centre.
    """
    feats = np.asarray(feats, dtype=np.float32)
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    spans = np.asarray([s[1:] if isinstance(s, WordSpan) else s for s in spans],
                       dtype=np.float64).reshape(-1, 2)
    if feats.ndim != 2 or feats.shape[0] != times.shape[0]:
        raise ValueError(f"feats {feats.shape} and times {times.shape} disagree: need (T, D) and (T,)")
    if len(spans) == 0:
        return np.zeros((0, feats.shape[1]), np.float32)
    if feats.shape[0] == 0:
        raise BadItem("no frames to pool over word spans")
    start, end = spans[:, :1], spans[:, 1:]                                     # (L, 1)
    inside = (times[None, :] >= start) & ((times[None, :] < end) | (times[None, :] == start))  # (L, T)
    empty = ~inside.any(axis=1)                                                 # (L,)
    nearest = np.abs(times[None, :] - (start + end) / 2.0).argmin(axis=1)       # (L,)
    inside[np.flatnonzero(empty), nearest[empty]] = True
    weights = inside / inside.sum(axis=1, keepdims=True)                        # (L, T)
    return (weights @ feats).astype(np.float32)


# ----------------------------------------------------------------------------- IEMOCAP

_WDSEG_FRAME_S = 0.01
_VARIANT = re.compile(r"\(\d+\)$")


def _is_marker(token):
    """Sentence/silence markers (``<s>``, ``<sil>``, ``</s>``) and fillers (``++BREATH++``)."""
    return (token.startswith("<") and token.endswith(">")) or \
        (token.startswith("++") and token.endswith("++"))


def read_iemocap_wdseg(path):
    """Words of an IEMOCAP forced-alignment ``.wdseg`` file as :class:`WordSpan` (seconds).

    Lines are ``SFrm EFrm SegAScr Word`` with 10 ms frames (``EFrm`` inclusive); markers
    (``<s>``, ``<sil>``, ``</s>``, ``++NOISE++``-style fillers) are dropped and pronunciation
    variants (``WORD(2)``) stripped.  Words keep the file's spelling (upper case).
    """
    if not os.path.isfile(path):
        raise BadItem(f"word alignment file not found: {path}")
    spans = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.split()
            if len(fields) != 4 or not (fields[0].isdigit() and fields[1].isdigit()):
                continue   # header, "Total score" line, blanks
            word = _VARIANT.sub("", fields[3])
            if word and not _is_marker(word):
                spans.append(WordSpan(word, int(fields[0]) * _WDSEG_FRAME_S,
                                      (int(fields[1]) + 1) * _WDSEG_FRAME_S))
    return spans


# ----------------------------------------------------------------------------- evaluation

def boundary_error(pred_spans, ref_spans):
    """Absolute error (ms) of word starts and ends, paired word by word.

    Returns ``{'mean_ms', 'median_ms', 'p95_ms', 'n'}`` over ``2 * L`` boundaries.
    Raises ``ValueError`` when the two lists do not have the same number of words.
    """
    if len(pred_spans) != len(ref_spans):
        raise ValueError(f"{len(pred_spans)} predicted vs {len(ref_spans)} reference words")
    pred = np.array([[s.start, s.end] for s in pred_spans], dtype=np.float64).reshape(-1)
    ref = np.array([[s.start, s.end] for s in ref_spans], dtype=np.float64).reshape(-1)
    if pred.size == 0:
        return {"mean_ms": float("nan"), "median_ms": float("nan"), "p95_ms": float("nan"), "n": 0}
    err = np.abs(pred - ref) * 1000.0
    return {"mean_ms": float(err.mean()), "median_ms": float(np.median(err)),
            "p95_ms": float(np.percentile(err, 95)), "n": int(err.size)}
