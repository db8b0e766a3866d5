#!/usr/bin/env python
"""Streaming realtime factor and window latency, fp32 vs INT8, on this machine.

    python benchmarks/stream_rtf.py [--seconds 30] [--models mid_tiny,mid_base] [--window 2 --hop 0.5]
                                    [--detect/--no-detect] [--work DIR] [--repeats 2]
                                    [--faces before,after] [--precisions fp32,int8]

``--faces``: the face/audio settings streamed, each over the same clip and model, interleaved
per repeat (same-run ratios on a shared machine): ``before`` = detection on every frame and
audio features of the whole window (the pre-issue-16 pipeline); ``after`` = detection every 5th
frame with the template tracker between and audio frames once per hop (``tools/stream.py``
defaults); ``tracker`` and ``hop-audio`` = one of the two changes alone; ``yunet`` = ``after``
with YuNet (needs its model file, see README).

Generates a demo-corpus-like clip (espeak-ng speech, a drawn face moving in a 640x360 frame at
25 fps, MJPG + PCM in .avi, SRT subtitles), exports each model with random weights (the cost
does not depend on the weights) at tri-modal store settings (log-mel + prosody, 300 audio
frames, 32 tokens, 8 face frames) and INT8-quantizes it (naive calibration on synthetic
inputs), then streams the clip with ``--no-realtime``:

* RTF = wall time of the whole stream (decoding, sync, features, model) / stream duration;
* window latency = features + model for one window (median, p95).

Goal: RTF <= 0.1 on the 2-core CPU.  Random weights: the numbers say nothing about accuracy.
"""
import json
import os
import tempfile

import click
import numpy as np

from emotion_mx.cli import run_cli

SETTINGS = dict(audio_feature="logmel+prosody", n_mels=64, audio_frames=300, num_frames=8, max_tokens=32)
SENTENCES = ["I really hate this meeting today", "what a wonderful surprise that was",
             "the report is on the table", "I miss them so much it hurts", "stop it this is outrageous",
             "our plan for tuesday is fine"]


def make_clip(path, seconds, fps=25, size=(640, 360), sr=16000):
    """Speech sentences with pauses + a face moving in a larger frame; returns (clip, srt)."""
    import subprocess
    import cv2
    import imageio_ffmpeg
    import librosa
    from emotion_mx.features.tts import synthesize
    from emotion_mx.inference.testing import face_image, write_srt, write_wav
    wave, cues, t = np.zeros(int(seconds * sr), np.float32), [], 0.3
    k = 0
    while t < seconds - 0.5:
        w, wsr, _ = synthesize(SENTENCES[k % len(SENTENCES)], voice="en")
        w = librosa.resample(w, orig_sr=wsr, target_sr=sr)
        n = min(len(w), len(wave) - int(t * sr))
        wave[int(t * sr):int(t * sr) + n] = w[:n]
        cues.append((t, t + n / sr, SENTENCES[k % len(SENTENCES)]))
        t += n / sr + 0.6
        k += 1
    wave += np.random.RandomState(0).normal(0, 0.003, wave.shape).astype(np.float32)
    base = os.path.splitext(path)[0]
    video, audio = base + ".v.avi", base + ".a.wav"
    vw = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(int(seconds * fps)):
        canvas = np.full((size[1], size[0], 3), 70, np.uint8)
        face = face_image(i / fps, 240)
        x = 200 + int(60 * np.sin(i / fps))
        canvas[60:300, x:x + 240] = face
        vw.write(canvas)
    vw.release()
    write_wav(audio, wave, sr)
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-y", "-v", "error", "-i", video, "-i", audio,
                    "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "pcm_s16le", path], check=True)
    os.unlink(video)
    os.unlink(audio)
    return path, write_srt(base + ".srt", cues)


FACES = {"before": dict(detect_every=1, face_detector="haar", hop_audio=False),
         "tracker": dict(detect_every=5, face_detector="haar", hop_audio=False),
         "hop-audio": dict(detect_every=1, face_detector="haar", hop_audio=True),
         "after": dict(detect_every=5, face_detector="haar", hop_audio=True),
         "yunet": dict(detect_every=5, face_detector="yunet", hop_audio=True)}


def corpus_clip(path, data, seconds):
    """A clip of real corpus media (``EMOTION_MX_DATA``): EmoDB utterances (2 s each), each
    played while a CK+48 face (upscaled to 200 px) is shown in a 640x360 frame at 25 fps
    (``write_corpus_clip``, as in benchmarks/stream_quality.py).  No subtitles."""
    import glob
    from emotion_mx.inference.testing import write_corpus_clip
    wavs = sorted(glob.glob(os.path.join(data, "emodb", "wav", "*.wav")))
    faces = sorted(glob.glob(os.path.join(data, "ckplus48", "*", "*.png")))
    n = max(1, int(round(seconds / 2.0)))
    step_w, step_f = max(1, len(wavs) // n), max(1, len(faces) // n)
    segments = [(wavs[k * step_w], faces[k * step_f]) for k in range(n)]
    clip, _ = write_corpus_clip(path, segments, fps=25, frame=(640, 360))
    return clip, None


def stream_once(model_dir, clip, srt, window, hop, faces="after"):
    from emotion_mx.inference.predict import Predictor
    from emotion_mx.inference.stream import StreamRunner, open_sources
    from emotion_mx.inference.subtitles import read_subtitles
    pred = Predictor(model_dir)
    opts = dict(FACES[faces])
    hop_audio = opts.pop("hop_audio")
    cues = read_subtitles(srt) if srt and "text" in pred.modalities else None
    runner = StreamRunner(pred, window=window, hop=hop, cues=cues, **opts)
    if not hop_audio:
        runner.audio_cache = None
    sources, _ = open_sources(pred.modalities, pred.config.audio.sample_rate, video=clip)
    rows = list(runner.run(sources, realtime=False))
    return runner.summary(), rows


@click.command()
@click.option("--seconds", default=30.0, show_default=True, help="Clip length.")
@click.option("--models", default="mid_tiny,mid_base", show_default=True,
              help="Registry models, comma-separated (pretrained presets too: whisper_tiny_en, mid_pretrained).")
@click.option("--window", default=2.0, show_default=True)
@click.option("--hop", default=0.5, show_default=True)
@click.option("--detect/--no-detect", default=True, show_default=True, help="Haar face detection per frame.")
@click.option("--repeats", default=2, show_default=True, help="Streams per model; the best RTF is reported.")
@click.option("--faces", default="before,after", show_default=True,
              help="Face/audio settings to compare: before, tracker, hop-audio, after, yunet (comma-separated).")
@click.option("--precisions", default="fp32,int8", show_default=True)
@click.option("--clip", "clip_kind", type=click.Choice(["synthetic", "corpus"]), default="synthetic", show_default=True,
              help="synthetic: espeak-ng speech + a drawn moving face + subtitles; corpus: EmoDB speech + CK+48 "
                   "faces from $EMOTION_MX_DATA.")
@click.option("--work", type=click.Path(), help="Working folder [a temporary one].")
def main(seconds, models, window, hop, detect, repeats, faces, precisions, clip_kind, work):
    from emotion_mx.inference.testing import make_exported
    work = work or tempfile.mkdtemp(prefix="stream_rtf.")
    os.makedirs(work, exist_ok=True)
    if clip_kind == "corpus":
        data = os.environ.get("EMOTION_MX_DATA")
        if not data:
            raise click.UsageError("--clip corpus needs EMOTION_MX_DATA (the shared data folder)")
        clip, srt = corpus_clip(os.path.join(work, "corpus_clip.avi"), data, seconds)
    else:
        clip, srt = make_clip(os.path.join(work, "clip.avi"), seconds)
    click.echo(f"clip {clip} ({clip_kind}): {seconds:g} s, 640x360 @ 25 fps; window {window:g} s, "
               f"hop {hop:g} s, face detection {'on' if detect else 'off'}; cpus {os.cpu_count()}")
    table = []
    face_modes = [f.strip() for f in faces.split(",") if f.strip()]
    for name in [m.strip() for m in models.split(",") if m.strip()]:
        for precision in [p.strip() for p in precisions.split(",") if p.strip()]:
            d = os.path.join(work, f"{name}-{precision}")
            if not os.path.isfile(os.path.join(d, "model.json")):
                make_exported(d, os.path.join(work, f"{name}-run"), name=name, precision=precision,
                              detect=detect, **SETTINGS)
            runs, rows = {f: [] for f in face_modes}, {}
            for _ in range(repeats):
                for f in face_modes:                    # interleaved: the same load on every setting
                    summary, rows[f] = stream_once(d, clip, srt, window, hop, f)
                    runs[f].append(summary)
            for f in face_modes:
                best = min(runs[f], key=lambda s: s["realtime_factor"])
                table.append(dict(_row(name, precision, f, best, runs[f]), **_agreement(rows[face_modes[0]], rows[f])))
    click.echo(f"\nload average during the runs (1/5/15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    click.echo("| model | precision | faces | windows | RTF (whole stream) | RTF (windows only) | window latency p50 / p95 (ms) "
               "| features / model median (ms) | detections / tracked frames | argmax agreement / max abs prob diff "
               f"vs {face_modes[0]} |")
    click.echo("|---|---|---|---|---|---|---|---|---|---|")
    for r in table:
        click.echo(f"| {r['model']} | {r['precision']} | {r['faces']} | {r['windows']} | {r['rtf']:.3f} "
                   f"(all {r['rtf_all']}) | {r['rtf_windows']:.3f} | "
                   f"{r['latency_median_ms']:.1f} / {r['latency_p95_ms']:.1f} | {r['features_ms']:.1f} / {r['model_ms']:.1f} "
                   f"| {r['detections']} / {r['tracked']} | {r['agreement']:.3f} / {r['max_prob_diff']:.2g} |")
    if len(face_modes) > 1:
        click.echo(f"\nratios to '{face_modes[0]}' (same model and precision, best of {repeats}):")
        base = {(r["model"], r["precision"]): r for r in table if r["faces"] == face_modes[0]}
        for r in table:
            if r["faces"] != face_modes[0]:
                b = base[(r["model"], r["precision"])]
                click.echo(f"  {r['model']} {r['precision']} {r['faces']}: RTF x{r['rtf'] / b['rtf']:.2f}, "
                           f"latency p50 x{r['latency_median_ms'] / b['latency_median_ms']:.2f}, "
                           f"p95 x{r['latency_p95_ms'] / b['latency_p95_ms']:.2f}")
    click.echo("\n" + json.dumps(table))


def _agreement(base_rows, rows):
    """Windows whose argmax equals the base setting's, and the largest probability difference."""
    pairs = [(a, b) for a, b in zip(base_rows, rows) if a["probabilities"] and b["probabilities"]]
    same = sum(a["label"] == b["label"] for a, b in pairs)
    diff = max((abs(a["probabilities"][k] - b["probabilities"][k]) for a, b in pairs for k in a["probabilities"]),
               default=0.0)
    return {"agreement": same / max(1, len(pairs)), "max_prob_diff": diff}


def _row(name, precision, faces, best, runs):
    return {"model": name, "precision": precision, "faces": faces, "windows": best["windows"],
            "rtf": best["realtime_factor"], "rtf_all": ", ".join(f"{s['realtime_factor']:.3f}" for s in runs),
            "rtf_windows": best["model_realtime_factor"],
            "latency_median_ms": best["window_latency_ms"]["median"],
            "latency_p95_ms": best["window_latency_ms"]["p95"],
            "features_ms": best["features_ms_median"], "model_ms": best["model_ms_median"],
            "detections": best["faces"]["detections"], "tracked": best["faces"]["tracked"],
            "dropped": sum(best["dropped"].values())}


if __name__ == "__main__":
    run_cli(main)
