"""Audio decoding and per-utterance features: log-mel, MFCC (+ deltas), prosody.

Decoding: wav/flac/ogg through soundfile (fast, seeks without decoding the whole file);
mp3, m4a and the audio tracks of video files (mp4, avi, flv, mkv, ...) through the ffmpeg
binary shipped by imageio-ffmpeg. Every problem with one file becomes a one-line
:class:`~emotion_mx.errors.BadItem`.

Features share one framing: an STFT with ``win_ms`` windows every ``hop_ms``, centred
frames, so ``T = 1 + len(wave) // hop`` for every feature. The power spectrogram is computed
once and log-mel, MFCC and RMS energy are derived from it.
"""
import math
import os
import re
import subprocess


def _numba_cache_dir():
    """librosa's numba functions (``cache=True``) keep compiled code beside their source; in a
    read-only install numba compiles again in every process (about 0.8 s on the first feature
    call).  Then point ``NUMBA_CACHE_DIR`` at a user cache, before librosa/numba are imported."""
    import importlib.util
    if "NUMBA_CACHE_DIR" in os.environ:
        return
    spec = importlib.util.find_spec("librosa")
    where = os.path.dirname(spec.origin) if spec and spec.origin else None
    if where and not os.access(where, os.W_OK):
        os.environ["NUMBA_CACHE_DIR"] = os.path.join(
            os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "emotion_mx", "numba")


_numba_cache_dir()

import librosa  # noqa: E402
import numpy as np  # noqa: E402
import scipy.ndimage  # noqa: E402
import soundfile as sf  # noqa: E402

from ..errors import BadItem  # noqa: E402

__all__ = ["load_audio", "prepare_wave", "logmel", "audio_features", "audio_feature_dims",
           "PROSODY_NAMES", "SILENCE_PEAK"]

SOUNDFILE_EXTS = {".wav", ".flac", ".ogg", ".aiff", ".aif"}
MAX_DECODE_SECONDS = 3600.0   # never decode more than this (also without max_seconds): 230 MB at 16 kHz
MAX_FILE_RATE = 384000        # a header claiming a higher sample rate is refused
# ffmpeg messages (at -v error) that mean the decoded audio is shorter than the file claims
_TRUNCATION = re.compile(r"filesize and duration do not match|partial file|Error while decoding|"
                         r"Invalid data found|[Tt]runcat", re.IGNORECASE)
SILENCE_PEAK = 1e-4            # a file whose absolute peak is below this is treated as silent
MIN_AUDIO_SECONDS = 0.1        # shorter audio holds no utterance (a few analysis frames at most)
PROSODY_NAMES = ("rms", "zcr", "f0_hz", "voiced")

# F0 tracking (librosa.yin) and the voicing decision; see docs/features.md.
F0_MIN_HZ = 60.0
F0_MAX_HZ = 600.0
F0_WINDOW_MS = 64.0            # yin frame: must hold >= 2 periods of F0_MIN_HZ (2 x 16.7 ms)
VOICED_MAX_DB_BELOW_PEAK = 30.0  # frames quieter than (loudest frame - 30 dB) are unvoiced
VOICED_MAX_ZCR = 0.3           # zero crossings per sample; fricatives/noise are above
VOICED_MAX_F0_JUMP = 0.1       # octaves from the 5-frame median F0 (yin is erratic on noise)


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------

def load_audio(path, sample_rate=16000, start=None, end=None, max_seconds=None, trim_db=None):
    """Decode ``path`` to mono float32 at ``sample_rate``; returns ``(S,)``.

    ``start``/``end`` (seconds) select a segment; ``end`` past the end of the file is clipped
    to it. ``max_seconds`` cuts what remains; ``trim_db`` then cuts the leading and trailing
    silence (:func:`prepare_wave`). Raises :class:`BadItem` for a missing, corrupt,
    undecodable, zero-length, silent or non-finite file and for a segment outside the file.
    """
    path = os.fspath(path)
    start, end = _check_segment(start, end)
    if not os.path.isfile(path):
        raise BadItem(f"audio file not found: {path} (check the corpus root and the manifest path)")
    if os.path.getsize(path) == 0:
        raise BadItem(f"audio file is empty (0 bytes): {path}")
    limit = min(MAX_DECODE_SECONDS, max_seconds) if max_seconds is not None else MAX_DECODE_SECONDS
    if os.path.splitext(path)[1].lower() in SOUNDFILE_EXTS:
        wave, file_sr = _read_soundfile(path, start, end, limit)
    else:
        wave, file_sr = _read_ffmpeg(path, sample_rate, start, end, limit), sample_rate
    return prepare_wave(wave, file_sr, sample_rate=sample_rate, max_seconds=limit, source=path, start=start,
                        trim_db=trim_db)


def prepare_wave(wave, wave_rate, sample_rate=16000, max_seconds=None, source="waveform", start=None, trim_db=None):
    """The decoded-samples half of :func:`load_audio`, also used for in-memory waveforms
    (``emotion_mx.api``): ``(S,)`` or ``(S, channels)`` samples at ``wave_rate`` → mono float32 at
    ``sample_rate``, cut to ``max_seconds`` (at most ``MAX_DECODE_SECONDS``); BadItem for
    zero-length, silent or non-finite audio (``source`` names it in the message).  ``trim_db``:
    leading and trailing frames quieter than ``trim_db`` below the loudest are cut
    (``librosa.effects.trim``), so corpora recorded with more or less silence around the
    utterance give the same features (``audio.trim_db`` of a dataset config)."""
    limit = min(MAX_DECODE_SECONDS, max_seconds) if max_seconds is not None else MAX_DECODE_SECONDS
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 2:
        wave = wave.mean(axis=1)                        # (S, channels) → (S,) mono
    if wave.ndim != 1:
        raise BadItem(f"expected (samples,) or (samples, channels) audio, got shape {wave.shape}: {source}")
    if int(wave_rate) <= 0:
        raise BadItem(f"sample rate must be positive, got {wave_rate}: {source}")
    if int(wave_rate) != sample_rate and wave.size:
        if not np.all(np.isfinite(wave)):
            raise BadItem(f"audio contains NaN/inf samples: {source}")
        wave = librosa.resample(wave, orig_sr=int(wave_rate), target_sr=sample_rate, res_type="soxr_hq")
    wave = wave[:int(round(limit * sample_rate))]
    _check_wave(wave, source, start)
    if trim_db is not None:
        wave = librosa.effects.trim(wave, top_db=float(trim_db))[0]
    if wave.size < MIN_AUDIO_SECONDS * sample_rate:
        raise BadItem(f"audio is {wave.size / sample_rate * 1000:.0f} ms long, shorter than the "
                      f"{MIN_AUDIO_SECONDS * 1000:.0f} ms an utterance needs: {source} "
                      "(check the file or the segment times)")
    return np.ascontiguousarray(wave, dtype=np.float32)  # (S,)


def _check_segment(start, end):
    start = None if start is None else float(start)
    end = None if end is None else float(end)
    for name, value in (("start", start), ("end", end)):
        if value is not None and not math.isfinite(value):
            raise BadItem(f"segment {name} {value} is not a finite number of seconds")
    if start is not None and start < 0:
        raise BadItem(f"segment start {start:g} s is negative")
    if end is not None and end <= (start or 0.0):
        raise BadItem(f"segment end {end:g} s is not after its start {start or 0.0:g} s")
    return start, end


def _read_soundfile(path, start, end, limit=MAX_DECODE_SECONDS):
    """Read (a segment of) a libsndfile-readable file, at most ``limit`` seconds of it;
    returns ((S,) float32, file rate)."""
    try:
        with sf.SoundFile(path) as f:
            sr, n_frames = f.samplerate, f.frames
            if not 0 < sr <= MAX_FILE_RATE or f.channels > 64:
                raise BadItem(f"audio header of {path} claims {sr} Hz, {f.channels} channels: not plausible")
            _check_not_truncated(f, path)
            first = 0 if start is None else int(round(start * sr))
            last = n_frames if end is None else min(n_frames, int(round(end * sr)))
            last = min(last, first + int(round(limit * sr)) + sr)             # the caller cuts exactly
            if n_frames > 0 and first >= n_frames:
                raise BadItem(f"segment start {start:g} s is beyond the end of {path} "
                              f"({n_frames / sr:.2f} s)")
            f.seek(first)
            data = f.read(max(0, last - first), dtype="float32", always_2d=True)  # (S, channels)
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
        raise BadItem(f"cannot decode audio {path}: {_one_line(e)} "
                      "(corrupt, truncated or unsupported; re-encode it as 16-bit PCM wav)") from None
    return data.mean(axis=1), sr  # downmix to mono: (S,)


_TRUNCATED_DATA = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def _check_not_truncated(f, path):
    """libsndfile reads a truncated wav without error; its header log tells the truth."""
    if f.format != "WAV":
        return
    m = _TRUNCATED_DATA.search(f.extra_info)
    if m is None:
        return
    declared, actual = int(m.group(1)), int(m.group(2))
    if 0 < declared < 0xFFFFFFFF and actual < declared:  # 0 / 0xFFFFFFFF: streamed, size unknown
        raise BadItem(f"audio file is truncated: {path} holds {actual} of the {declared} data "
                      "bytes its header declares (re-copy or re-download it)")


def _read_ffmpeg(path, sample_rate, start, end, limit=MAX_DECODE_SECONDS):
    """Decode any ffmpeg-readable file's first audio stream to mono f32le at ``sample_rate``
    (at most ``limit`` seconds).  A file ffmpeg reports as truncated or damaged is refused (a
    truncated MP3 used to become a shorter clip without a word)."""
    import imageio_ffmpeg
    # warnings too: truncation ("filesize and duration do not match") is only a warning
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "warning", "-i", path]
    if start is not None:
        # output seeking: decodes from the start and drops samples up to ``start`` exactly.
        # Input seeking (-ss before -i) is faster but, for Opus in .mkv, was 16 samples off
        # (codec pre-skip); a segment must equal the same samples of the whole decode.
        cmd += ["-ss", f"{start:.6f}"]
    seg = None if end is None else end - (start or 0.0)
    span = seg if seg is not None and seg <= limit else limit + 1.0   # the caller cuts exactly
    cmd += ["-t", f"{span:.6f}"]
    cmd += ["-map", "0:a:0", "-vn", "-ac", "1", "-ar", str(int(sample_rate)),
            "-f", "f32le", "-acodec", "pcm_f32le", "-"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        stderr = proc.stderr.decode("utf-8", "replace")
        if "matches no streams" in stderr:
            raise BadItem(f"no audio track in {path}")
        reason = _first_error_line(stderr) or f"exit code {proc.returncode}"
        raise BadItem(f"cannot decode audio {path}: ffmpeg: {reason} (corrupt or unsupported file)")
    stderr = proc.stderr.decode("utf-8", "replace")
    if _TRUNCATION.search(stderr):
        raise BadItem(f"audio file is truncated or damaged: {path}: ffmpeg: "
                      f"{_first_error_line(stderr)} (re-copy or re-encode it)")
    return np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32)  # (S,)


def _check_wave(wave, path, start):
    if wave.size == 0:
        if start is not None:
            raise BadItem(f"segment starting at {start:g} s is outside the audio of {path}")
        raise BadItem(f"audio is zero-length: {path}")
    if not np.all(np.isfinite(wave)):
        raise BadItem(f"audio contains NaN/inf samples: {path}")
    peak = float(np.max(np.abs(wave)))
    if peak < SILENCE_PEAK:
        raise BadItem(f"audio is silent (peak {peak:.1e} < {SILENCE_PEAK:.0e}): {path} "
                      "(check the file or the segment times)")


def _first_error_line(stderr):
    """ffmpeg's first stderr line names the cause; later ones are consequences."""
    lines = [re.sub(r"^\[[^\]]*\]\s*", "", ln.strip()) for ln in stderr.splitlines() if ln.strip()]
    return lines[0] if lines else ""  # without the "[in#0 @ 0x...]" context prefix


def _one_line(err):
    """Last non-empty line of an error message (library messages can span lines)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return lines[-1] if lines else ""


# --------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------

def _framing(sample_rate, win_ms, hop_ms):
    """(n_fft, hop) in samples; the window is the whole FFT frame."""
    return int(round(sample_rate * win_ms / 1000.0)), int(round(sample_rate * hop_ms / 1000.0))


def _power_spectrogram(wave, n_fft, hop, center=True):
    spec = librosa.stft(np.asarray(wave, dtype=np.float32), n_fft=n_fft, hop_length=hop,
                        win_length=n_fft, center=center)
    return np.abs(spec) ** 2  # (1 + n_fft // 2, T)


def _logmel_from_power(power, sample_rate, n_fft, n_mels, fmin, fmax):
    mel = librosa.feature.melspectrogram(S=power, sr=sample_rate, n_fft=n_fft, n_mels=n_mels,
                                         fmin=fmin, fmax=fmax)
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)  # (n_mels, T)


def logmel(wave, sample_rate=16000, n_mels=64, win_ms=25.0, hop_ms=10.0, fmin=50.0, fmax=None):
    """Log-mel spectrogram in dB, ``(T, n_mels)`` float32, one frame every ``hop_ms``."""
    n_fft, hop = _framing(sample_rate, win_ms, hop_ms)
    power = _power_spectrogram(wave, n_fft, hop)
    return _logmel_from_power(power, sample_rate, n_fft, n_mels, fmin, fmax).T.astype(np.float32)


def _mfcc(logmel_db, n_mfcc, deltas):
    """MFCC from a log-mel spectrogram, optionally with deltas and delta-deltas."""
    mfcc = librosa.feature.mfcc(S=logmel_db, n_mfcc=n_mfcc)  # (n_mfcc, T)
    if not deltas:
        return mfcc
    # 'interp' needs at least `width` frames; very short clips fall back to edge padding.
    mode = "interp" if mfcc.shape[1] >= 9 else "nearest"
    d1 = librosa.feature.delta(mfcc, width=9, order=1, mode=mode)
    d2 = librosa.feature.delta(mfcc, width=9, order=2, mode=mode)
    return np.concatenate([mfcc, d1, d2], axis=0)  # (3 * n_mfcc, T)


def _prosody(power, zcr, f0, n_fft):
    """``(4, T)``: RMS energy, zero-crossing rate, F0 in Hz (0 when unvoiced), voiced 0/1."""
    rms = librosa.feature.rms(S=np.sqrt(power), frame_length=n_fft)[0]  # (T,)
    voiced = _voicing(rms, zcr, f0)  # (T,) bool
    return np.stack([rms, zcr, np.where(voiced, f0, 0.0), voiced.astype(np.float32)])


def _yin_frame_length(sample_rate):
    return 1 << int(np.ceil(np.log2(sample_rate * F0_WINDOW_MS / 1000.0)))  # 1024 @16k


def _yin(wave, sample_rate, hop, center=True):
    fmax = min(F0_MAX_HZ, sample_rate / 4.0)
    return librosa.yin(wave, fmin=F0_MIN_HZ, fmax=fmax, sr=sample_rate,
                       frame_length=_yin_frame_length(sample_rate), hop_length=hop, center=center)  # (T,)


def _voicing(rms, zcr, f0):
    """Voiced = loud enough, few zero crossings and a locally stable yin F0.

    A cheap stand-in for pyin's HMM voicing (which runs ~60x slower); on EmoDB it agrees
    with ``librosa.pyin`` on about 86 % of frames (docs/features.md).
    """
    level_db = librosa.amplitude_to_db(rms, ref=np.max, amin=1e-10, top_db=None)  # (T,)
    log_f0 = np.log2(np.maximum(f0, 1e-3))
    jump = np.abs(log_f0 - scipy.ndimage.median_filter(log_f0, size=5, mode="nearest"))
    return (level_db > -VOICED_MAX_DB_BELOW_PEAK) & (zcr < VOICED_MAX_ZCR) & (jump < VOICED_MAX_F0_JUMP)


def audio_features(wave, sample_rate=16000, n_mels=64, win_ms=25.0, hop_ms=10.0, n_mfcc=20,
                   deltas=True, prosody=True, fmin=50.0, fmax=None):
    """Frame features of one utterance, all float32 with the same ``T = 1 + len(wave) // hop``.

    Returns ``{'logmel': (T, n_mels), 'mfcc': (T, n_mfcc * (3 if deltas else 1)),
    'prosody': (T, 4)}`` (``'prosody'`` only when ``prosody``; columns ``PROSODY_NAMES``).
    Raises :class:`BadItem` if any value is NaN/inf.
    """
    wave = np.asarray(wave, dtype=np.float32)  # (S,)
    if wave.ndim != 1 or wave.size == 0:
        raise BadItem(f"expected a non-empty mono waveform, got shape {wave.shape}")
    if not np.all(np.isfinite(wave)):
        raise BadItem("waveform contains NaN/inf samples")
    n_fft, hop = _framing(sample_rate, win_ms, hop_ms)
    return features_from_parts(frame_parts(wave, sample_rate, n_fft, hop, prosody), sample_rate, n_fft,
                               n_mels=n_mels, n_mfcc=n_mfcc, deltas=deltas, fmin=fmin, fmax=fmax)


def frame_parts(wave, sample_rate, n_fft, hop, prosody=True, center=True):
    """The per-frame parts of :func:`audio_features`: each frame's values depend only on the
    samples under it (``{'power': (n_fft // 2 + 1, T), 'zcr': (T,), 'f0': (T,)}``, the last two
    only with ``prosody``).  ``center=False``: frames start at 0 (no edge padding), so a
    stream can compute the frames of new samples alone (:class:`emotion_mx.inference.window.HopAudioCache`)."""
    names = ("power", "zcr", "f0") if prosody else ("power",)
    return {name: frame_part(name, wave, sample_rate, n_fft, hop, center) for name in names}


def frame_part(name, wave, sample_rate, n_fft, hop, center=True):
    """One part of :func:`frame_parts`: ``'power'`` (n_fft // 2 + 1, T), ``'zcr'`` or ``'f0'`` (T,)."""
    if name == "power":
        return _power_spectrogram(wave, n_fft, hop, center)
    if name == "zcr":
        return librosa.feature.zero_crossing_rate(wave, frame_length=n_fft, hop_length=hop, center=center)[0]
    return _yin(wave, sample_rate, hop, center)


def part_frame_lengths(sample_rate, n_fft):
    """Samples under one frame of each part of :func:`frame_parts`."""
    return {"power": n_fft, "zcr": n_fft, "f0": _yin_frame_length(sample_rate)}


def features_from_parts(parts, sample_rate, n_fft, n_mels=64, n_mfcc=20, deltas=True, fmin=50.0, fmax=None):
    """:func:`audio_features` from the per-frame parts of the whole utterance (the steps that
    look across frames: deltas, the voicing decision)."""
    power = parts["power"]
    mel_db = _logmel_from_power(power, sample_rate, n_fft, n_mels, fmin, fmax)  # (n_mels, T)
    feats = {"logmel": mel_db, "mfcc": _mfcc(mel_db, n_mfcc, deltas)}
    if "f0" in parts:
        feats["prosody"] = _prosody(power, parts["zcr"], parts["f0"], n_fft)  # (4, T)
    out = {}
    for name, value in feats.items():
        value = np.ascontiguousarray(value.T, dtype=np.float32)  # (T, D)
        if not np.all(np.isfinite(value)):
            raise BadItem(f"audio feature '{name}' has NaN/inf values")
        out[name] = value
    lengths = {name: v.shape[0] for name, v in out.items()}
    assert len(set(lengths.values())) == 1, f"frame counts differ: {lengths}"
    return out


def audio_feature_dims(n_mels=64, n_mfcc=20, deltas=True, prosody=True, whisper=False):
    """Feature name → width D of the ``(T, D)`` arrays :func:`audio_features` returns
    (``whisper``: also Whisper's log-mel, :func:`whisper_features`)."""
    dims = {"logmel": int(n_mels), "mfcc": int(n_mfcc) * (3 if deltas else 1)}
    if prosody:
        dims["prosody"] = len(PROSODY_NAMES)
    if whisper:
        from .whisper_frontend import WHISPER_FRONTEND
        dims["whisper_logmel"] = WHISPER_FRONTEND["n_mels"]
    return dims


def whisper_features(wave, sample_rate):
    """``{'whisper_logmel': (T, 80)}``: the Whisper encoder's own front end (16 kHz only)."""
    from .whisper_frontend import whisper_logmel
    try:
        return {"whisper_logmel": whisper_logmel(wave, sample_rate=sample_rate)}
    except ValueError as e:
        raise BadItem(str(e)) from None
