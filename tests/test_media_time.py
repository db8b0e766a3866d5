"""True media timestamps on a variable-frame-rate file (2 s at 25 fps, then 2 s at 5 fps).

Frame ``i`` of the clip is a flat grey of level ``4 * i``, so a decoded image tells which frame
it is; the test checks that the frame paired with each time is the one shown at that time.
"""
import bisect

import numpy as np
import pytest

from emotion_mx.features.face import extract_faces
from emotion_mx.features.frames import frames_at, iter_frames, probe
from emotion_mx.inference.sources import AudioPipe, VideoFrames, merge
from emotion_mx.inference.sync import SyncBuffer
from emotion_mx.inference.testing import write_vfr_clip


@pytest.fixture(scope="module")
def vfr(tmp_path_factory):
    path, times, wave = write_vfr_clip(str(tmp_path_factory.mktemp("vfr") / "vfr.mkv"))
    return path, times, wave


def shown_at(times, c):
    """Index of the frame shown at time c (latest frame starting at or before c)."""
    return max(0, bisect.bisect_right(list(times), c + 1e-6) - 1)


def level(image):
    return int(round(float(np.mean(image)) / 4))


def test_frame_times_are_presentation_times(vfr):
    path, times, _ = vfr
    got = [(t, level(f.to_ndarray(format="gray"))) for t, f in iter_frames(path)]
    assert len(got) == 60 and [i for _, i in got] == list(range(60))
    np.testing.assert_allclose([t for t, _ in got], times, atol=2e-3)   # mkv: 1 ms time base
    assert got[50][0] == pytest.approx(2.0, abs=1e-3)    # index / mean fps would say 3.33 s
    assert probe(path).duration == pytest.approx(4.0, abs=0.01)


def test_frames_at_picks_the_frame_on_screen(vfr):
    path, times, _ = vfr
    query = [0.01, 1.99, 2.0, 2.1, 2.39, 2.41, 3.9, 0.5]
    images, chosen = frames_at(path, query)
    expect = [shown_at(times, c) for c in query]
    assert [level(im) for im in images] == expect == [0, 49, 50, 50, 51, 52, 59, 12]
    np.testing.assert_allclose(chosen, times[expect], atol=2e-3)


def test_dataset_faces_of_a_segment(vfr):
    path, times, _ = vfr
    out = extract_faces(path, is_image=False, start=1.5, end=3.5, num_frames=4, detect=False, size=16)
    centres = 1.5 + (np.arange(4) + 0.5) * 0.5                       # 1.75 2.25 2.75 3.25
    expect = [shown_at(times, c) for c in centres]                   # 43 51 53 56
    assert expect == [43, 51, 53, 56]
    np.testing.assert_allclose(out["times"], times[expect], atol=2e-3)
    np.testing.assert_allclose(out["frames"][:, 0].mean(axis=(1, 2)), 4 * np.array(expect), atol=3)


def test_stream_pairs_each_audio_window_with_the_frame_shown(vfr):
    """The streaming path: each window's sampled frames are those on screen at the sample
    times, and the audio of the window is the file's samples at the same times."""
    path, times, wave = vfr
    video = VideoFrames(path)
    buf = SyncBuffer(["audio", "video"], window=1.0, hop=0.5, tolerance=0.1, sample_rate=16000, num_frames=4)
    windows = []
    for ev in merge([video, AudioPipe(path, 16000)]):
        windows += buf.push(ev)
    windows += buf.finish()
    assert [w.start for w in windows] == [0.5 * k for k in range(7)]
    for w in windows:
        expect = [shown_at(times, c) for c in w.sample_times]
        assert len(w.images) == 4 and [level(im) for im in w.images] == expect, w.start
        np.testing.assert_allclose(w.frame_times, times[expect], atol=2e-3)
        i0 = int(round(w.start * 16000))
        np.testing.assert_allclose(w.wave, wave[i0:i0 + len(w.wave)], atol=1e-4)
    late = [w for w in windows if w.start == 2.0][0]          # the 5 fps part: 2.125 s → frame 50
    assert [level(im) for im in late.images] == [50, 51, 53, 54]


def test_audio_that_starts_late_is_timed_from_the_container_start(tmp_path):
    """An audio track that starts 0.5 s after the video: its chunks are stamped from 0.5 s."""
    import subprocess
    import imageio_ffmpeg
    from emotion_mx.inference.testing import tone_wave, write_face_clip, write_wav
    video = write_face_clip(str(tmp_path / "v.avi"), 2.0, fps=10)
    wave = tone_wave(1.0, 16000, seed=1)
    audio = write_wav(str(tmp_path / "a.wav"), wave, 16000)
    out = str(tmp_path / "late.mkv")
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-y", "-v", "error", "-i", video,
                    "-itsoffset", "0.5", "-i", audio, "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy",
                    "-c:a", "pcm_s16le", out], check=True)
    assert probe(out).audio_offset == pytest.approx(0.5, abs=2e-3)
    chunks = [ev for ev in AudioPipe(out, 16000) if ev.kind == "audio" and hasattr(ev, "samples")]
    assert chunks[0].t == pytest.approx(0.5, abs=2e-3)
    got = np.concatenate([c.samples for c in chunks])
    np.testing.assert_allclose(got[:16000], wave[:16000], atol=1e-4)      # sample 0 is the track's first
