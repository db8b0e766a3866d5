"""Audio decoding and features (librosa): log-mel, MFCC with deltas, prosody."""
import numpy as np
import librosa


def logmel(wave, sample_rate=16000, n_mels=64, win_ms=25.0, hop_ms=10.0, fmin=50.0, fmax=None):
    """Log-mel spectrogram, ``(T, n_mels)`` float32, one frame every ``hop_ms``."""
    n_fft = int(round(sample_rate * win_ms / 1000.0))
    hop = int(round(sample_rate * hop_ms / 1000.0))
    mel = librosa.feature.melspectrogram(
        y=np.asarray(wave, dtype=np.float32), sr=sample_rate, n_fft=n_fft, hop_length=hop,
        win_length=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, power=2.0)
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None).T.astype(np.float32)  # (T, n_mels)
