"""Audio decoding and features on synthetic files written into tmp_path."""
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile as sf

from emotion_mx.errors import BadItem
from emotion_mx.features.audio import (PROSODY_NAMES, audio_feature_dims, audio_features,
                                       load_audio, logmel)

SR = 16000
HOP = 160


def tone(freq=220.0, seconds=1.0, sr=SR, amp=0.5):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write(path, wave, sr=SR, subtype="PCM_16"):
    sf.write(str(path), wave, sr, subtype=subtype)
    return path


def ffmpeg(*args):
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-y", *map(str, args)]
    subprocess.run(cmd, check=True)


# --------------------------------------------------------------------------------------------
# load_audio
# --------------------------------------------------------------------------------------------

def test_load_wav_roundtrip(tmp_path):
    wave = load_audio(write(tmp_path / "a.wav", tone()))
    assert wave.dtype == np.float32 and wave.shape == (SR,)
    assert np.abs(wave).max() == pytest.approx(0.5, abs=1e-3)


def test_stereo_is_downmixed(tmp_path):
    left, right = tone(220), tone(330, amp=0.25)
    wave = load_audio(write(tmp_path / "s.wav", np.stack([left, right], axis=1)))
    assert wave.shape == (SR,)
    np.testing.assert_allclose(wave, (left + right) / 2, atol=1e-3)


def test_resample_44k_to_16k_keeps_duration(tmp_path):
    wave = load_audio(write(tmp_path / "hi.flac", tone(seconds=1.5, sr=44100), sr=44100))
    assert wave.shape == (24000,)
    assert audio_features(wave)["prosody"][20:-20, 2].mean() == pytest.approx(220, abs=3)


def test_segment_and_max_seconds(tmp_path):
    path = write(tmp_path / "a.wav", tone(seconds=2.0))
    assert load_audio(path, start=0.5, end=1.25).shape == (12000,)
    assert load_audio(path, start=1.5).shape == (8000,)
    assert load_audio(path, end=5.0).shape == (32000,)        # end past the file: clipped
    assert load_audio(path, max_seconds=0.5).shape == (8000,)
    assert load_audio(path, start=0.5, max_seconds=0.25).shape == (4000,)


@pytest.mark.parametrize("start,end,text", [(3.0, None, "beyond the end"),
                                            (1.0, 0.5, "not after its start"),
                                            (-1.0, None, "negative")])
def test_bad_segment(tmp_path, start, end, text):
    path = write(tmp_path / "a.wav", tone(seconds=2.0))
    with pytest.raises(BadItem, match=text):
        load_audio(path, start=start, end=end)


def test_mp3_through_ffmpeg(tmp_path):
    wav = write(tmp_path / "a.wav", tone(seconds=2.0, sr=22050), sr=22050)
    mp3 = tmp_path / "a.mp3"
    ffmpeg("-i", wav, "-codec:a", "libmp3lame", "-b:a", "64k", mp3)
    wave = load_audio(mp3)
    assert abs(wave.shape[0] - 2 * SR) < 0.05 * SR
    assert load_audio(mp3, start=0.5, end=1.5).shape[0] == pytest.approx(SR, abs=0.02 * SR)
    assert np.median(audio_features(wave)["prosody"][20:-20, 2]) == pytest.approx(220, abs=3)


def test_video_audio_track_through_ffmpeg(tmp_path):
    mp4 = tmp_path / "clip.mp4"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=2:sample_rate=44100",
           "-f", "lavfi", "-i", "color=c=gray:s=64x64:d=2:r=10",
           "-c:v", "mpeg4", "-c:a", "aac", "-shortest", mp4)
    wave = load_audio(mp4, start=0.5, end=1.5)
    assert wave.shape[0] == pytest.approx(SR, abs=0.03 * SR)
    assert np.median(audio_features(wave)["prosody"][10:-10, 2]) == pytest.approx(440, abs=5)


@pytest.mark.parametrize("ext,codec", [("mkv", "libopus"), ("mp4", "aac")])
def test_compressed_segment_is_the_same_samples_as_the_whole_decode(tmp_path, ext, codec):
    """A segment read from a video container equals the same samples of the whole track."""
    noise = (np.random.default_rng(0).normal(size=6 * SR) * 0.2).astype(np.float32)
    wav = write(tmp_path / "n.wav", noise, subtype="FLOAT")
    clip = tmp_path / f"clip.{ext}"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=64x64:d=6:r=10", "-i", wav, "-shortest",
           "-c:v", "mpeg4", "-c:a", codec, "-b:a", "128k", clip)
    whole = load_audio(clip)
    for start in (1.3, 3.77):
        seg = load_audio(clip, start=start, end=start + 1.0)
        first = int(round(start * SR))
        np.testing.assert_array_equal(seg, whole[first:first + len(seg)])
        assert len(seg) == SR


def test_video_without_audio_track(tmp_path):
    avi = tmp_path / "silent.avi"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=64x64:d=1:r=10", "-c:v", "mjpeg", avi)
    with pytest.raises(BadItem, match="no audio track"):
        load_audio(avi)


def test_missing_file(tmp_path):
    with pytest.raises(BadItem, match="not found"):
        load_audio(tmp_path / "nope.wav")


def test_corrupt_files(tmp_path):
    junk = np.random.default_rng(0).bytes(4000)
    (tmp_path / "junk.wav").write_bytes(b"RIFF" + junk)
    (tmp_path / "junk.mp3").write_bytes(junk)
    for name in ("junk.wav", "junk.mp3"):
        with pytest.raises(BadItem, match="cannot decode audio") as info:
            load_audio(tmp_path / name)
        assert "\n" not in str(info.value) and "Traceback" not in str(info.value)


def test_truncated_wav(tmp_path):
    data = write(tmp_path / "a.wav", tone()).read_bytes()
    (tmp_path / "half.wav").write_bytes(data[: len(data) // 2])
    with pytest.raises(BadItem, match="truncated"):
        load_audio(tmp_path / "half.wav")
    (tmp_path / "header.wav").write_bytes(data[:30])
    with pytest.raises(BadItem, match="cannot decode audio"):
        load_audio(tmp_path / "header.wav")


def test_zero_length_and_empty(tmp_path):
    with pytest.raises(BadItem, match="zero-length"):
        load_audio(write(tmp_path / "zero.wav", np.zeros(0, np.float32)))
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(BadItem, match="empty"):
        load_audio(tmp_path / "empty.wav")


def test_silent_and_nonfinite(tmp_path):
    with pytest.raises(BadItem, match="silent"):
        load_audio(write(tmp_path / "quiet.wav", tone(amp=5e-5), subtype="FLOAT"))
    bad = tone()
    bad[100] = np.nan
    with pytest.raises(BadItem, match="NaN"):
        load_audio(write(tmp_path / "nan.wav", bad, subtype="FLOAT"))


# --------------------------------------------------------------------------------------------
# audio_features
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [SR, SR + 77, 500])
def test_feature_shapes(n):
    wave = tone(seconds=2.0)[:n]
    feats = audio_features(wave)
    T = 1 + n // HOP
    assert feats["logmel"].shape == (T, 64)
    assert feats["mfcc"].shape == (T, 60)
    assert feats["prosody"].shape == (T, len(PROSODY_NAMES))
    assert all(v.dtype == np.float32 for v in feats.values())
    assert {k: v.shape[1] for k, v in feats.items()} == audio_feature_dims(64, 20, True, True)


def test_feature_options():
    feats = audio_features(tone(), n_mels=40, n_mfcc=13, deltas=False, prosody=False, hop_ms=20.0)
    assert set(feats) == {"logmel", "mfcc"}
    assert feats["logmel"].shape == (1 + SR // 320, 40) and feats["mfcc"].shape == (1 + SR // 320, 13)
    assert audio_feature_dims(40, 13, False, False) == {"logmel": 40, "mfcc": 13}


def test_logmel_matches_audio_features():
    wave = tone(seconds=0.5)
    np.testing.assert_array_equal(logmel(wave), audio_features(wave, prosody=False)["logmel"])


def test_f0_and_voicing_tone_vs_silence():
    wave = np.concatenate([tone(220, 1.0), np.zeros(SR, np.float32)])
    prosody = audio_features(wave)["prosody"]                     # (201, 4)
    rms, zcr, f0, voiced = prosody.T
    assert np.median(f0[10:90]) == pytest.approx(220, abs=3)
    assert voiced[5:95].mean() > 0.95 and voiced[110:].max() == 0
    assert np.all(f0[voiced == 0] == 0)
    assert rms[10:90].min() > 100 * rms[110:].max() + 1e-6
    assert zcr[10:90].mean() == pytest.approx(2 * 220 / SR, rel=0.1)


def test_chirp_f0_rises():
    t = np.arange(SR) / SR
    chirp = (0.3 * np.sin(2 * np.pi * (100 * t + 150 * t * t))).astype(np.float32)  # 100 → 400 Hz
    f0 = audio_features(chirp)["prosody"][:, 2]
    expected = 100 + 300 * np.arange(len(f0)) * HOP / SR
    np.testing.assert_allclose(f0[10:-10], expected[10:-10], rtol=0.05)


def test_noise_is_mostly_unvoiced():
    noise = (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    assert audio_features(noise)["prosody"][:, 3].mean() < 0.1


def test_features_reject_nonfinite_and_empty():
    bad = tone()
    bad[5] = np.inf
    with pytest.raises(BadItem, match="NaN/inf"):
        audio_features(bad)
    with pytest.raises(BadItem, match="non-empty mono"):
        audio_features(np.zeros(0, np.float32))


def test_numba_cache_moves_to_a_user_dir_when_librosa_is_read_only(monkeypatch, tmp_path):
    import emotion_mx.features.audio as fa
    # setenv first so that monkeypatch records the original state and restores it: the function
    # writes os.environ itself, and a leaked NUMBA_CACHE_DIR (an empty tmp folder) sent every later
    # subprocess of the suite to compile and write numba's cache concurrently from scratch
    monkeypatch.setenv("NUMBA_CACHE_DIR", "unset-below")
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(fa.os, "access", lambda path, mode: False)
    fa._numba_cache_dir()
    assert fa.os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "emotion_mx" / "numba")
    monkeypatch.setenv("NUMBA_CACHE_DIR", "/elsewhere")     # the user's choice wins
    fa._numba_cache_dir()
    assert fa.os.environ["NUMBA_CACHE_DIR"] == "/elsewhere"
