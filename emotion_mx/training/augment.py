"""Feature-space augmentation for the training split (the store holds features, not media).

Each sample gets its own generator seeded from ``(seed, epoch, sample index)``, so the
augmentation of an epoch does not depend on batch composition, worker count or resumption.
Audio: time stretch (linear resampling of the real frames along time; mask follows), pitch
shift (roll of the mel bins by up to ``pitch_shift_bins``, edges repeated), SpecAugment time
and frequency masks (set to 0 = the normalised mean), Gaussian noise on real frames.
Video: horizontal flip, brightness (additive) and contrast (scale about the frame mean)
jitter, on real frames.  Text is left unchanged.
"""
import numpy as np

from ..errors import ConfigError

__all__ = ["augment_batch", "check_augment"]


def check_augment(cfg, audio_frames=None, mel_bins=0):
    """Refuse masks and shifts at least as large as the input they act on (``audio_frames``: the
    run's ``max_audio_frames``; ``mel_bins``: log-mel bins): they would blank or wrap whole clips."""
    if audio_frames and cfg.time_masks and cfg.time_mask_width >= audio_frames:
        raise ConfigError(f"augment.time_mask_width = {cfg.time_mask_width} frames is not shorter than the "
                          f"clips ({audio_frames} frames, data.max_audio_frames): use a width below "
                          f"{audio_frames} (SpecAugment uses about a tenth of the clip)")
    if audio_frames and cfg.time_masks * cfg.time_mask_width >= 2 * audio_frames:
        raise ConfigError(f"augment.time_masks x augment.time_mask_width = {cfg.time_masks * cfg.time_mask_width} "
                          f"frames can cover the whole {audio_frames}-frame clips several times over; "
                          "use fewer or narrower time masks")
    for key, width in (("freq_mask_width", cfg.freq_mask_width if cfg.freq_masks else 0),
                       ("pitch_shift_bins", cfg.pitch_shift_bins)):
        if width and mel_bins and width >= mel_bins:
            raise ConfigError(f"augment.{key} = {width} is not smaller than the {mel_bins} mel bins of "
                              f"the audio features: use a value below {mel_bins}")


def _stretch(x, length, rate, max_len):
    """Resample ``x[:length]`` (T, F) to ``round(length * rate)`` frames (≤ max_len)."""
    new_len = int(np.clip(round(length * rate), 1, max_len))
    if new_len == length or length < 2:
        return x[:length], length
    src = np.linspace(0.0, length - 1, new_len)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, length - 1)
    frac = (src - lo)[:, None].astype(np.float32)
    return x[lo] * (1.0 - frac) + x[hi] * frac, new_len


def _augment_audio(x, m, cfg, rng, mel_bins):
    t_max, feat = x.shape
    length = int(m.sum())
    if length == 0:
        return x, m
    x = x.copy()
    if cfg.time_stretch:
        rate = rng.uniform(1.0 - cfg.time_stretch, 1.0 + cfg.time_stretch)
        y, length = _stretch(x, length, rate, t_max)
        x[:] = 0.0
        x[:length] = y
        m = np.zeros_like(m)
        m[:length] = 1.0
    bins = min(mel_bins, feat)
    if cfg.pitch_shift_bins and bins > 1:
        k = int(rng.integers(-cfg.pitch_shift_bins, cfg.pitch_shift_bins + 1))
        if k:
            idx = np.clip(np.arange(bins) - k, 0, bins - 1)
            x[:length, :bins] = x[:length, idx]
    for _ in range(cfg.time_masks):
        w = int(rng.integers(0, min(cfg.time_mask_width, length) + 1))
        if w:
            s = int(rng.integers(0, length - w + 1))
            x[s:s + w] = 0.0
    for _ in range(cfg.freq_masks):
        w = int(rng.integers(0, min(cfg.freq_mask_width, bins) + 1))
        if w:
            s = int(rng.integers(0, bins - w + 1))
            x[:length, s:s + w] = 0.0
    if cfg.noise_std:
        x[:length] += rng.normal(0.0, cfg.noise_std, size=(length, feat)).astype(np.float32)
    return x, m


def _augment_video(v, m, cfg, rng):
    real = m > 0
    if not real.any():
        return v
    v = v.copy()
    if cfg.face_flip and rng.random() < cfg.face_flip:
        v[real] = v[real][..., ::-1]
    if cfg.contrast:
        c = rng.uniform(1.0 - cfg.contrast, 1.0 + cfg.contrast)
        mean = v[real].mean(axis=(1, 2, 3), keepdims=True)
        v[real] = (v[real] - mean) * c + mean
    if cfg.brightness:
        v[real] += rng.uniform(-cfg.brightness, cfg.brightness)
    return v


def augment_batch(inputs, indices, cfg, *, seed, epoch, mel_bins):
    """Augmented copy of a batch ``inputs`` (dict name → array) whose rows are the training
    samples ``indices``; ``mel_bins`` = leading audio feature dims that are mel bins (0 = no
    pitch shift / frequency masks)."""
    if not cfg.enabled:
        return inputs
    out = dict(inputs)
    has_audio, has_video = "audio" in inputs, "video" in inputs
    if has_audio:
        out["audio"], out["audio_mask"] = inputs["audio"].copy(), inputs["audio_mask"].copy()
    if has_video:
        out["video"] = inputs["video"].copy()
    for row, idx in enumerate(indices):
        rng = np.random.default_rng([seed, epoch, int(idx)])
        if has_audio:
            out["audio"][row], out["audio_mask"][row] = _augment_audio(
                inputs["audio"][row], inputs["audio_mask"][row], cfg, rng, mel_bins)
        if has_video:
            out["video"][row] = _augment_video(inputs["video"][row], inputs["video_mask"][row], cfg, rng)
    return out
