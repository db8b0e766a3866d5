"""TTS word events, TTS+DTW word alignment, span pooling, IEMOCAP wdseg, boundary error."""
import multiprocessing
import threading

import numpy as np
import pytest

from emotion_mx.errors import BadItem
from emotion_mx.features.align import (WordSpan, align_words, boundary_error, pool_over_spans,
                                       proportional_spans, read_iemocap_wdseg, tts_word_spans)
from emotion_mx.features.tts import synthesize, voice_for_lang

SENTENCES = {
    "en": ("The quick brown fox jumps over the lazy dog.",
           ["The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog"]),
    "de": ("Der Lappen liegt auf dem Eisschrank.",
           ["Der", "Lappen", "liegt", "auf", "dem", "Eisschrank"]),
    "cmn": ("我们去公园散步吧。", ["我", "们", "去", "公", "园", "散", "步", "吧"]),
}


# ----------------------------------------------------------------------------- tts

@pytest.mark.parametrize("voice", ["en", "de", "cmn"])
def test_synthesize_gives_audio_and_one_increasing_event_per_word(voice):
    text, words = SENTENCES[voice]
    wave, sr, events = synthesize(text, voice)
    assert wave.dtype == np.float32 and wave.ndim == 1 and sr == 22050
    assert 0.5 < len(wave) / sr < 10 and 0.01 < np.abs(wave).max() <= 1.0
    assert [w for w, _ in events] == words
    starts = [s for _, s in events]
    assert starts[0] >= 0 and all(b > a for a, b in zip(starts, starts[1:]))
    assert starts[-1] < len(wave) / sr


def test_synthesize_words_map_back_to_transcript_tokens():
    _, _, events = synthesize("Over 175 lazy dogs, Dr. Smith's e-mail.", "en")
    assert [w for w, _ in events] == ["Over", "175", "lazy", "dogs", "Dr", "Smith's", "e-mail"]


def test_synthesize_rate_changes_duration_and_is_not_sticky():
    text = SENTENCES["en"][0]
    default = len(synthesize(text, "en")[0])
    slow = len(synthesize(text, "en", rate=100)[0])
    assert slow > 1.4 * default
    assert len(synthesize(text, "en")[0]) == pytest.approx(default, rel=0.02)


def test_voice_for_lang():
    assert voice_for_lang("de") == "de" and voice_for_lang("zh") == "cmn"
    assert voice_for_lang("cmn") == "cmn" and voice_for_lang("en_US") == "en-us"
    assert voice_for_lang(None) == "en"


@pytest.mark.parametrize("text", ["", "   ", None])
def test_empty_transcript_is_bad_item(text):
    with pytest.raises(BadItem, match="empty transcript"):
        synthesize(text, "en")
    with pytest.raises(BadItem, match="empty transcript"):
        align_words(np.random.default_rng(0).standard_normal(16000).astype(np.float32), 16000, text)


def test_unknown_voice_is_bad_item():
    with pytest.raises(BadItem, match="unknown espeak-ng voice"):
        synthesize("hello", "xx-nonexistent")
    wave, sr, _ = synthesize("hello", "en")   # the engine still works afterwards
    assert len(wave) > 0


def test_silent_recording_is_bad_item():
    with pytest.raises(BadItem, match="silent"):
        align_words(np.zeros(16000, np.float32), 16000, "hello world")


def test_synthesize_is_thread_safe():
    text = SENTENCES["de"][0]
    expected = synthesize(text, "de")[2]
    results = []
    threads = [threading.Thread(target=lambda v=v: results.append((v, synthesize(text, v)[2])))
               for v in ["de", "en", "de", "en"]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    german = [r for v, r in results if v == "de"]
    assert len(german) == 2 and len(results) == 4
    for events in german:   # espeak keeps a little state between calls: +-1 ms, rarely 11 ms
        assert [w for w, _ in events] == [w for w, _ in expected]
        np.testing.assert_allclose([s for _, s in events], [s for _, s in expected], atol=0.02)


def _words_in_child(text):
    return synthesize(text, "en")[2]


def test_synthesize_in_forked_workers():
    text = SENTENCES["en"][0]
    expected = [w for w, _ in synthesize(text, "en")[2]]   # parent initialised before fork
    with multiprocessing.get_context("fork").Pool(2) as pool:
        for events in pool.map(_words_in_child, [text, text]):
            assert [w for w, _ in events] == expected


# ----------------------------------------------------------------------------- alignment

def _recording(text, voice, rate, sample_rate=16000, pad_s=0.3, snr_db=30.0):
    """Another voice/rate speaking ``text``, padded and noisy: (wave, reference spans)."""
    wave, sr, spans = tts_word_spans(text, voice, rate=rate, sample_rate=sample_rate)
    pad = np.zeros(int(pad_s * sr), np.float32)
    wave = np.concatenate([pad, wave, pad])
    noise = np.random.default_rng(0).standard_normal(len(wave)).astype(np.float32)
    wave = wave + noise * np.sqrt(np.mean(wave ** 2) / 10 ** (snr_db / 10))
    return wave, [WordSpan(s.word, s.start + pad_s, s.end + pad_s) for s in spans]


@pytest.mark.parametrize("voice,rate,max_mean_ms", [
    ("en+f3", 130, 15.0),     # measured 5.5 ms; linear warp (no DTW) 35 ms; naive 255 ms
    ("en-us", 220, 12.0),     # measured 3.6 ms; linear warp 29 ms; naive 167 ms
])
def test_align_words_recovers_boundaries_of_another_voice(voice, rate, max_mean_ms):
    text = "Please call Stella and ask her to bring these things with her from the store."
    wave, ref = _recording(text, voice, rate)
    spans = align_words(wave, 16000, text, "en")

    assert [s.word for s in spans] == [s.word for s in ref]
    bounds = np.array([[s.start, s.end] for s in spans])
    assert bounds.min() >= 0 and bounds.max() <= len(wave) / 16000
    assert np.all(bounds[:, 0] <= bounds[:, 1]) and np.all(np.diff(bounds[:, 0]) >= 0)

    err = boundary_error(spans, ref)
    naive = boundary_error(proportional_spans([s.word for s in ref], len(wave) / 16000), ref)
    assert err["n"] == 2 * len(ref)
    assert err["mean_ms"] < max_mean_ms
    assert err["mean_ms"] < naive["mean_ms"] / 8


def test_align_words_german_at_the_synthesis_rate():
    text = "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück."
    wave, ref = _recording(text, "de+m3", 150, sample_rate=22050)
    spans = align_words(wave, 22050, text, "de")
    # measured 4.3 ms; a linear warp (no DTW) gives 14.9 ms
    assert boundary_error(spans, ref)["mean_ms"] < 10.0


def test_tts_word_spans_are_ordered_and_inside_the_audio():
    wave, sr, spans = tts_word_spans("Hello there, how are you?", "en", sample_rate=16000)
    assert sr == 16000 and [s.word for s in spans] == ["Hello", "there", "how", "are", "you"]
    for a, b in zip(spans, spans[1:]):
        assert a.start < a.end <= b.start
    assert spans[-1].end <= len(wave) / sr
    # the comma pause is not part of "there"
    assert spans[2].start - spans[1].end > 0.05


# ----------------------------------------------------------------------------- pooling

def test_pool_over_spans_means_and_nearest_fallback():
    feats = np.arange(12, dtype=np.float32).reshape(6, 2)     # (T=6, D=2)
    times = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    spans = np.array([[0.0, 0.2],     # frames 0, 1 (end exclusive)
                      [0.2, 0.5],     # frames 2, 3, 4
                      [0.33, 0.36],   # empty: nearest to 0.345 is frame 3
                      [0.9, 1.0]])    # beyond the end: last frame
    out = pool_over_spans(feats, times, spans)
    assert out.shape == (4, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out, [[1, 2], [6, 7], [6, 7], [10, 11]])


def test_pool_over_spans_sparse_face_frames_and_wordspans():
    feats = np.array([[1.0], [3.0]], np.float32)               # two face frames
    times = np.array([0.25, 1.75])
    spans = [WordSpan("a", 0.0, 1.0), WordSpan("b", 1.0, 2.0), WordSpan("c", 0.9, 1.1)]
    np.testing.assert_allclose(pool_over_spans(feats, times, spans), [[1.0], [3.0], [1.0]])
    assert pool_over_spans(feats, times, np.zeros((0, 2))).shape == (0, 1)


# ----------------------------------------------------------------------------- IEMOCAP, error

WDSEG = """\tSFrm\tEFrm\tSegAScr Word
\t0\t32\t-1000354\t<s>
\t33\t49\t-393213\tEXCUSE
\t50\t58\t-156220\tME(2)
\t59\t70\t-82000\t<sil>
\t71\t80\t-100000\t++BREATH++
\t81\t120\t-393213\tHELLO
\t121\t150\t-1000354\t</s>
 Total score:\t-3125354
"""


def test_read_iemocap_wdseg(tmp_path):
    path = tmp_path / "Ses01F_impro01_F000.wdseg"
    path.write_text(WDSEG)
    spans = read_iemocap_wdseg(str(path))
    assert [s.word for s in spans] == ["EXCUSE", "ME", "HELLO"]
    np.testing.assert_allclose([[s.start, s.end] for s in spans],
                               [[0.33, 0.50], [0.50, 0.59], [0.81, 1.21]])
    with pytest.raises(BadItem, match="not found"):
        read_iemocap_wdseg(str(tmp_path / "missing.wdseg"))


def test_boundary_error():
    ref = [WordSpan("a", 0.0, 0.5), WordSpan("b", 0.5, 1.0)]
    pred = [WordSpan("a", 0.01, 0.5), WordSpan("b", 0.52, 1.1)]
    err = boundary_error(pred, ref)
    assert err["n"] == 4
    assert err["mean_ms"] == pytest.approx(32.5) and err["median_ms"] == pytest.approx(15.0)
    with pytest.raises(ValueError):
        boundary_error(pred[:1], ref)
