"""Helpers for inference tests and benchmarks: an exported model that records preprocessing
settings (random weights), and generated media (speech wav, face clip, audio+video file, SRT)."""
import math
import os
import shutil
import subprocess
from dataclasses import replace

import numpy as np

from .. import artifacts as A
from ..deploy.quantize import quantize_symbol
from ..deploy.testing import make_run, synthetic_inputs
from ..features.audio import audio_feature_dims
from ..features.text import build_vocab, save_vocab
from ..fileio import write_json
from ..models import model_input_settings, model_input_sizes
from ..store import wordpiece_file

WORDS = ("furious hate unacceptable angry outrageous stop wonderful great love happy fantastic "
         "delighted table report tuesday schedule meeting window lonely miss sorry lost tears gone "
         "the this today really about our plan was i think it is a hello world").split()


def preprocessing(n_mels=16, prosody=False, num_frames=4, size=48, detect=False):
    """audio/text/face/align sections as a store's config.yaml holds them."""
    return {"audio": {"sample_rate": 16000, "n_mels": n_mels, "win_ms": 25.0, "hop_ms": 10.0, "n_mfcc": 20,
                      "deltas": True, "prosody": prosody, "fmin": 50.0, "fmax": None, "max_seconds": 30.0},
            "text": {"lower": True},
            "face": {"num_frames": num_frames, "size": size, "grayscale": True, "detect": detect},
            "align": {"enabled": True}}


def make_exported(out_dir, work_dir, name="mid_tiny", modalities=None, precision="fp32", seed=0,
                  audio_feature="logmel", n_mels=16, audio_frames=64, num_frames=4, max_tokens=12,
                  with_preprocessing=True, detect=False):
    """An exported model dir (fp32, or INT8 calibrated on synthetic inputs) whose sidecar holds
    ``features.preprocessing``, norm constants for every feature and a real vocabulary.

    Returns the sidecar. ``work_dir`` receives the intermediate run directory.
    """
    # models on pretrained encoders take their own inputs (Whisper log-mel, WordPiece, 64 px faces)
    needs, sizes = model_input_settings(name, modalities), model_input_sizes(name, modalities)
    audio_feature = needs.get("audio_feature", audio_feature)
    size = sizes.get("frame_size", 48)
    pre = preprocessing(n_mels=n_mels, prosody="prosody" in audio_feature, num_frames=num_frames, detect=detect,
                        size=size)
    pre["audio"]["whisper"] = audio_feature == "whisper_logmel"
    dims = audio_feature_dims(n_mels, 20, True, "prosody" in audio_feature, whisper=pre["audio"]["whisper"])
    audio_dim = sum(dims[p] for p in audio_feature.split("+"))
    wordpiece = needs.get("text_ids") == "wordpiece"
    vocab = build_vocab([WORDS])
    run = os.path.join(work_dir, "run")
    spec = make_run(run, name, seed=seed, modalities=modalities, audio_dim=audio_dim, audio_frames=audio_frames,
                    vocab_size=sizes.get("vocab_size", len(vocab)), max_tokens=max_tokens, num_frames=num_frames,
                    frame_size=size)
    # without: only what exports before format 2 recorded (the store's audio and face sizes)
    old = {"audio": dict(spec.data.preprocessing["audio"], n_mels=n_mels), "face": {"size": size, "grayscale": True}}
    spec = replace(spec, data=replace(spec.data, audio_feature=audio_feature,
                                      preprocessing=pre if with_preprocessing else old))
    A.save_model_spec(run, spec)
    if wordpiece:
        if os.path.exists(A.run_file(run, A.VOCAB)):       # make_run's word list: not this model's
            os.unlink(A.run_file(run, A.VOCAB))
        shutil.copyfile(wordpiece_file(), A.run_file(run, A.TOKENIZER))
    else:
        save_vocab(vocab, A.run_file(run, A.VOCAB))
    norm = {"logmel": {"mean": [-40.0] * n_mels, "std": [20.0] * n_mels},
            "mfcc": {"mean": [0.0] * dims["mfcc"], "std": [30.0] * dims["mfcc"]},
            "prosody": {"mean": [0.02, 0.1, 150.0, 0.5], "std": [0.05, 0.1, 80.0, 0.5]},
            "frames": {"mean": [0.45], "std": [0.25]}}
    write_json(A.run_file(run, A.NORM), norm)
    if precision == "fp32":
        return A.export_run(run, out_dir)
    net, spec = A.load_run_model(run)
    names = A.input_names(spec["modalities"])
    sym = A.trace_symbol(net, names)
    args, aux = A.block_arrays(net, sym)
    calib = [synthetic_inputs(spec, batch_size=8, seed=s) for s in range(2)]
    qsym, qargs, qaux, _ = quantize_symbol(sym, args, aux, names, calib, calib_mode="naive")
    norm_, vocab_file = A.run_export_inputs(run)
    sidecar = A.make_sidecar(spec, precision="int8", norm=norm_, vocab_file=vocab_file)
    A.write_exported(out_dir, qsym, qargs, qaux, sidecar, run_dir=run)
    return sidecar


# --------------------------------------------------------------------------------------------
# media
# --------------------------------------------------------------------------------------------

def tone_wave(seconds, sr=16000, seed=0, silent=()):
    """A voiced-like test signal (harmonics with a moving pitch + noise); ``silent``: list of
    (start, end) seconds set to exact zeros."""
    t = np.arange(int(round(seconds * sr))) / sr
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    wave = sum(0.2 / k * np.sin(k * phase) for k in range(1, 6)) * (0.6 + 0.4 * np.sin(2 * np.pi * 2.5 * t))
    wave = wave + np.random.RandomState(seed).normal(0, 0.005, t.shape)
    for a, b in silent:
        wave[int(a * sr):int(b * sr)] = 0.0
    return wave.astype(np.float32)


def write_wav(path, wave, sr=16000):
    import soundfile as sf
    sf.write(path, wave, sr, subtype="PCM_16", format="WAV")
    return path


def face_image(t, size=96):
    """A drawn face (BGR) whose mouth moves with ``t`` seconds."""
    import cv2
    img = np.full((size, size, 3), 40, np.uint8)
    c = size // 2
    cv2.ellipse(img, (c, c), (size * 3 // 10, size * 4 // 10), 0, 0, 360, (190, 190, 190), -1)
    for side in (-1, 1):
        cv2.circle(img, (c + side * size // 8, c - size // 12), 4, (20, 20, 20), -1)
    mouth = int(8 * math.sin(2 * math.pi * 0.5 * t))
    cv2.ellipse(img, (c, c + size // 5), (size // 8, max(1, abs(mouth))), 0, 0, 360, (30, 30, 120), -1)
    cv2.putText(img, f"{t:.1f}", (2, size - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (255, 255, 255), 1)
    return img


def write_face_clip(path, seconds, fps=10, size=96):
    """An MJPG ``.avi`` face clip of ``seconds`` at ``fps``."""
    import cv2
    vw = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), fps, (size, size))
    for i in range(int(round(seconds * fps))):
        vw.write(face_image(i / fps, size))
    vw.release()
    return path


def write_av_clip(path, seconds, fps=10, sr=16000, silent=(), seed=0):
    """A face clip with a PCM (16 kHz mono) audio track muxed by imageio-ffmpeg's binary.

    ``.avi`` with PCM keeps ffmpeg segment seeking sample exact (mkv/mp4 seeking is not).
    Returns ``(path, wave)``.
    """
    base = os.path.splitext(path)[0]
    video, audio = base + ".video.avi", base + ".audio.wav"
    write_face_clip(video, seconds, fps)
    wave = tone_wave(seconds, sr, seed=seed, silent=silent)
    write_wav(audio, wave, sr)
    _mux(video, audio, path)
    return path, wave


def _mux(video, audio, path):
    """Video stream of ``video`` + audio of ``audio`` → ``path`` (imageio-ffmpeg); inputs removed."""
    import imageio_ffmpeg
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-y", "-v", "error", "-i", video, "-i", audio,
           "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "pcm_s16le", path]
    subprocess.run(cmd, check=True, capture_output=True)
    os.unlink(video)
    os.unlink(audio)


def write_vfr_clip(path, segments=((2.0, 25), (2.0, 5)), size=64, sr=16000, seed=0):
    """A variable-frame-rate ``.mkv`` (MJPEG + PCM audio) made by imageio-ffmpeg's binary.

    ``segments``: ``(seconds, fps)`` runs; frame ``i`` is a flat grey of level ``4 * i`` (so a
    decoded frame tells which one it is).  Returns ``(path, frame_times, wave)``.
    """
    import imageio_ffmpeg
    times = []
    t0 = 0.0
    for seconds, fps in segments:
        n = int(round(seconds * fps))
        times += [round(t0 + k / fps, 6) for k in range(n)]
        t0 += seconds
    frames = np.stack([np.full((size, size), min(255, 4 * i), np.uint8) for i in range(len(times))])
    base = os.path.splitext(path)[0]
    audio = base + ".audio.wav"
    wave = tone_wave(t0, sr, seed=seed)
    write_wav(audio, wave, sr)
    # pts of frame N from the segment table: if(lt(N,n1), N/fps1, t1 + (N-n1)/fps2 ...)
    parts, start_n, start_t = [], 0, 0.0
    for seconds, fps in segments:
        n = int(round(seconds * fps))
        parts.append((start_n, start_n + n, start_t, fps))
        start_n, start_t = start_n + n, start_t + seconds
    expr = f"{parts[-1][2]}+(N-{parts[-1][0]})/{parts[-1][3]}"
    for lo, hi, t, fps in reversed(parts[:-1]):
        expr = f"if(lt(N\\,{hi})\\,{t}+(N-{lo})/{fps}\\,{expr})"     # commas escaped for -vf
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-y", "-v", "error",
           "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{size}x{size}", "-r", "1000", "-i", "-",
           "-i", audio, "-map", "0:v:0", "-map", "1:a:0",
           "-vf", f"setpts=({expr})/TB", "-fps_mode", "passthrough",
           "-c:v", "mjpeg", "-q:v", "2", "-pix_fmt", "yuvj420p", "-c:a", "pcm_s16le", path]
    subprocess.run(cmd, input=frames.tobytes(), check=True, capture_output=True)
    os.unlink(audio)
    return path, np.asarray(times), wave


def write_corpus_clip(path, segments, fps=10, frame=(480, 360), face_side=200, sr=16000):
    """A clip made of real corpus media: each ``(audio_file, face_image)`` segment plays the
    whole audio file while its face image (upscaled to ``face_side`` px, on a grey frame of
    ``frame`` = (W, H)) is shown.  MJPG + PCM ``.avi`` muxed by imageio-ffmpeg's binary.

    Returns ``(path, bounds)``: the ``(start, end)`` seconds of each segment.
    """
    import cv2
    import librosa
    base = os.path.splitext(path)[0]
    video, audio = base + ".video.avi", base + ".audio.wav"
    waves, bounds, t = [], [], 0.0
    W, H = frame
    vw = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), fps, (W, H))
    shown = 0
    for wav_file, image_file in segments:
        wave, _ = librosa.load(wav_file, sr=sr, mono=True)
        waves.append(wave.astype(np.float32))
        bounds.append((t, t + len(wave) / sr))
        t += len(wave) / sr
        face = cv2.resize(cv2.imread(image_file, cv2.IMREAD_COLOR), (face_side, face_side),
                          interpolation=cv2.INTER_CUBIC)
        img = np.full((H, W, 3), 110, np.uint8)
        y0, x0 = (H - face_side) // 2, (W - face_side) // 2
        img[y0:y0 + face_side, x0:x0 + face_side] = face
        while shown < int(round(t * fps)):              # frames whose time falls in this segment
            vw.write(img)
            shown += 1
    vw.release()
    write_wav(audio, np.concatenate(waves), sr)
    _mux(video, audio, path)
    return path, bounds


def write_srt(path, cues):
    """``cues``: [(start_s, end_s, text)] → an SRT file (comma millis, multi-line allowed)."""
    def ts(x):
        ms = int(round(x * 1000))
        return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"
    blocks = [f"{i + 1}\n{ts(a)} --> {ts(b)}\n{text}\n" for i, (a, b, text) in enumerate(cues)]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(blocks))
    return path
