"""Word-boundary error of TTS+DTW alignment on speech with known word boundaries.

The "recording" is the transcript spoken by a different espeak-ng voice variant at a
different rate (and, for the accent rows, a different accent), resampled to 16 kHz, padded
with silence and mixed with white noise at a given SNR; its word boundaries are known from
espeak's word events.  ``align_words`` (default voice of the language, default rate) must
recover them.  Baselines, side by side:
  * naive:  words share the recording's duration in proportion to their character count;
  * linear: the alignment synthesis's own word timings stretched linearly from its speech
            region onto the recording's (global tempo only, no DTW).

Usage:
    .venv/bin/python benchmarks/dtw_error.py [--snr 30 20] [--rates 130 175 220] [--json out.json]

German sentences are the 10 EmoDB texts from $EMOTION_MX_DATA/emodb/labels.csv when present.
"""
import argparse
import csv
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from emotion_mx.features import align  # noqa: E402
from emotion_mx.features.align import WordSpan  # noqa: E402

SAMPLE_RATE = 16000
PAD_S = 0.3

SENTENCES = {
    "en": [
        "The quick brown fox jumps over the lazy dog.",
        "I can't believe you did that again, it is absolutely ridiculous!",
        "Please call Stella and ask her to bring these things with her from the store.",
        "We were away a year ago, and the weather was lovely.",
        "Kids are talking by the door.",
        "Dogs are sitting by the door.",
        "Why would you say something like that to me?",
        "It's eleven o'clock, and I still haven't heard from him.",
        "That is the best news I have heard all year.",
        "Leave me alone, I don't want to talk about it.",
    ],
    "de": [   # fallback when EmoDB is absent
        "Der Lappen liegt auf dem Eisschrank.",
        "Das will sie am Mittwoch abgeben.",
        "Heute abend könnte ich es ihm sagen.",
        "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
        "In sieben Stunden wird es soweit sein.",
        "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
        "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
        "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
        "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
        "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
    ],
    "cmn": [
        "今天天气很好，我们去公园散步吧。",
        "我不相信你又做了这件事。",
        "请你明天早上八点到办公室来。",
        "这个消息让我非常高兴。",
        "你为什么总是这样对我说话？",
        "他已经三天没有回家了。",
        "别管我，我不想谈这件事。",
        "我们下个星期一起去北京旅行。",
    ],
}

# Recording voices: same synthesiser family, other speaker variants (and accents).
VARIANTS = {
    "en": ["en+f3", "en+m3", "en-us", "en+klatt"],
    "de": ["de+f3", "de+m3", "de+f2", "de+klatt"],
    "cmn": ["cmn+f3", "cmn+m3", "cmn+f2", "cmn+klatt"],
}


def emodb_sentences():
    root = os.environ.get("EMOTION_MX_DATA")
    path = os.path.join(root, "emodb", "labels.csv") if root else None
    if not path or not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        texts = {row["sentence"]: row["text_de"] for row in csv.DictReader(f) if row.get("text_de")}
    return [texts[k] for k in sorted(texts)] or None


def make_recording(text, voice, rate, snr_db, seed):
    """(wave (S,) at SAMPLE_RATE, [WordSpan] reference) for ``text`` spoken by ``voice``."""
    wave, sr, spans = align.tts_word_spans(text, voice, rate=rate, sample_rate=SAMPLE_RATE)
    pad = np.zeros(int(PAD_S * sr), np.float32)
    wave = np.concatenate([pad, wave, pad])
    noise = np.random.default_rng(seed).standard_normal(len(wave)).astype(np.float32)
    noise *= np.sqrt(np.mean(wave ** 2) / 10 ** (snr_db / 10.0))
    ref = [WordSpan(s.word, s.start + PAD_S, s.end + PAD_S) for s in spans]
    return wave + noise, ref


def linear_spans(text, lang, recording):
    """Baseline: the alignment synthesis's word timings stretched onto the recording."""
    syn, _, spans = align.tts_word_spans(text, lang, sample_rate=SAMPLE_RATE)
    threshold = align._silence_threshold_db(recording)
    s0, s1 = (b / SAMPLE_RATE for b in align._speech_bounds(syn, threshold))
    r0, r1 = (b / SAMPLE_RATE for b in align._speech_bounds(recording, threshold))
    scale = (r1 - r0) / max(s1 - s0, 1e-3)
    return [WordSpan(s.word, r0 + (s.start - s0) * scale, r0 + (s.end - s0) * scale) for s in spans]


def errors_ms(pred, ref):
    p = np.array([[s.start, s.end] for s in pred]).ravel()
    r = np.array([[s.start, s.end] for s in ref]).ravel()
    return np.abs(p - r) * 1000.0


def summary(err):
    """Same figures as ``boundary_error``, over a pooled array of absolute errors (ms)."""
    if err.size == 0:
        return {"mean_ms": float("nan"), "median_ms": float("nan"), "p95_ms": float("nan"), "n": 0}
    return {"mean_ms": float(err.mean()), "median_ms": float(np.median(err)),
            "p95_ms": float(np.percentile(err, 95)), "n": int(err.size)}


def run_language(lang, sentences, rates, snr_db):
    """Errors (ms) of DTW / naive / linear over sentences x variants x rates, and timing."""
    errs = {"dtw": [], "naive": [], "linear": []}
    by_variant = {v: [] for v in VARIANTS[lang]}
    audio_s = align_s = 0.0
    skipped = 0
    for i, text in enumerate(sentences):
        for voice in VARIANTS[lang]:
            for rate in rates:
                rec, ref = make_recording(text, voice, rate, snr_db, seed=i)
                t0 = time.perf_counter()
                pred = align.align_words(rec, SAMPLE_RATE, text, lang)
                align_s += time.perf_counter() - t0
                audio_s += len(rec) / SAMPLE_RATE
                if [s.word for s in pred] != [s.word for s in ref]:
                    skipped += 1   # tokenisation differs between voices: not comparable
                    continue
                errs["dtw"].append(errors_ms(pred, ref))
                by_variant[voice].append(errs["dtw"][-1])
                naive = align.proportional_spans([s.word for s in ref], len(rec) / SAMPLE_RATE)
                errs["naive"].append(errors_ms(naive, ref))
                errs["linear"].append(errors_ms(linear_spans(text, lang, rec), ref))
    pooled = {k: np.concatenate(v) if v else np.zeros(0) for k, v in errs.items()}
    pooled.update({f"dtw[{v}]": np.concatenate(e) for v, e in by_variant.items() if e})
    return pooled, align_s / max(audio_s, 1e-9), skipped


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rates", type=int, nargs="+", default=[130, 175, 220])
    ap.add_argument("--snr", type=float, nargs="+", default=[30.0, 20.0, 10.0])
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    sentences = dict(SENTENCES)
    emodb = emodb_sentences()
    if emodb:
        sentences["de"] = emodb
    print(f"German sentences: {'EmoDB labels.csv' if emodb else 'built-in'} ({len(sentences['de'])})")

    t0 = time.perf_counter()
    align.align_words(*make_recording("Hello world.", "en+f3", 175, 30.0, 0)[:1], SAMPLE_RATE,
                      "Hello world.", "en")
    print(f"first call (numba compilation of dtw): {time.perf_counter() - t0:.2f} s")

    rows = []
    header = (f"{'lang':5} {'snr':>4} {'n':>5} | {'DTW mean':>8} {'median':>6} {'p95':>6} | "
              f"{'naive mean':>10} {'p95':>6} | {'linear mean':>11} {'p95':>6} | {'s/s audio':>9}")
    print(header)
    print("-" * len(header))
    for snr in args.snr:
        for lang in ("en", "de", "cmn"):
            errs, rtf, skipped = run_language(lang, sentences[lang], args.rates, snr)
            d, n, l = (summary(errs[k]) for k in ("dtw", "naive", "linear"))
            rows.append({"lang": lang, "snr_db": snr, "dtw": d, "naive": n, "linear": l,
                         "align_seconds_per_audio_second": rtf, "skipped": skipped})
            print(f"{lang:5} {snr:4.0f} {d['n']:5d} | {d['mean_ms']:8.1f} {d['median_ms']:6.1f} "
                  f"{d['p95_ms']:6.1f} | {n['mean_ms']:10.1f} {n['p95_ms']:6.1f} | "
                  f"{l['mean_ms']:11.1f} {l['p95_ms']:6.1f} | {rtf:9.4f}"
                  + (f"  ({skipped} skipped)" if skipped else ""))
            variants = {k[4:-1]: summary(v) for k, v in errs.items() if k.startswith("dtw[")}
            rows[-1]["dtw_by_variant"] = variants
            print("      DTW mean by recording voice: "
                  + ", ".join(f"{v} {m['mean_ms']:.1f}" for v, m in variants.items()))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"rates": args.rates, "variants": VARIANTS, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
