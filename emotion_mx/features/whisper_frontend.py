"""The Whisper log-mel front end (Radford et al. 2022), with librosa.

Constants are Whisper's own (openai/whisper ``audio.py``): 16 kHz, a 400-sample (25 ms) Hann
window every 160 samples (10 ms), centred frames with reflect padding (the last frame dropped,
so ``T = len(wave) // 160``), 80 Slaney-normalised mel bands, ``log10`` of the power clamped at
1e-10, floored at (max - 8), then ``(x + 4) / 4``.  The maximum is taken over the input given:
unpadded inputs (shorter than Whisper's 30 s window) therefore get their own floor.

These constants travel with every embedding cache and, later, with an exported model's sidecar
(:data:`WHISPER_FRONTEND`), so predictions from raw media repeat them exactly.
"""
import functools

import librosa
import numpy as np

__all__ = ["whisper_logmel", "WHISPER_FRONTEND"]

WHISPER_FRONTEND = dict(sample_rate=16000, n_fft=400, hop_length=160, n_mels=80, mel_norm="slaney",
                        log_floor=1e-10, dynamic_range=8.0, offset=4.0, scale=4.0)


@functools.lru_cache(maxsize=2)
def _mel_basis(sample_rate, n_fft, n_mels):
    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, norm="slaney",
                               htk=False).astype(np.float32)                 # (80, 201)


def whisper_logmel(wave, sample_rate=16000):
    """``(T, 80)`` float32 Whisper log-mel of a mono float waveform at 16 kHz."""
    c = WHISPER_FRONTEND
    if sample_rate != c["sample_rate"]:
        raise ValueError(f"whisper_logmel needs {c['sample_rate']} Hz audio, got {sample_rate} Hz")
    wave = np.asarray(wave, dtype=np.float32)
    spec = librosa.stft(wave, n_fft=c["n_fft"], hop_length=c["hop_length"], window="hann",
                        center=True, pad_mode="reflect")[:, :-1]             # (201, T)
    power = np.abs(spec) ** 2
    mel = _mel_basis(c["sample_rate"], c["n_fft"], c["n_mels"]) @ power       # (80, T)
    log = np.log10(np.maximum(mel, c["log_floor"]))
    log = np.maximum(log, log.max() - c["dynamic_range"])
    return ((log + c["offset"]) / c["scale"]).T.astype(np.float32)           # (T, 80)
