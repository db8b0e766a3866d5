"""Load-adaptive quality: a slow stage pushes the level down, recovery brings it back up;
audio-only and video-only streams."""
import pytest

from emotion_mx.inference.predict import Predictor
from emotion_mx.inference.quality import LEVELS, QualityController
from emotion_mx.inference.sources import AudioPipe
from emotion_mx.inference.stream import StreamRunner, open_sources
from emotion_mx.inference.testing import write_av_clip, write_face_clip, write_wav, tone_wave


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_export):
    d = tmp_path_factory.mktemp("quality")
    model = tiny_export
    clip, wave = write_av_clip(str(d / "clip.avi"), 10.0, fps=10)
    wav = write_wav(str(d / "speech.wav"), tone_wave(3.0, 16000, seed=3), 16000)
    mute = write_face_clip(str(d / "mute.avi"), 3.0, fps=10)
    return {"model": model, "clip": clip, "wav": wav, "mute": mute, "predictor": Predictor(model)}


class FakeClock:
    """A clock that only moves when the slow stage says so (no timing in the assertions)."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_controller_hysteresis():
    q = QualityController(budget=1.0, up_after=3, recover_ratio=0.5)
    seen = []
    for i, load in enumerate([2, 2, 2, 0.8, 0.8, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.7, 0.2, 0.2, 0.2]):
        q.observe(i, load)
        seen.append(q.level)
    # down one level per overloaded window; between 0.5 and 1.0 x budget: hold; 3 light windows: up one
    assert seen == [1, 2, 3, 3, 3, 3, 3, 2, 2, 2, 1, 1, 1, 1, 0]
    assert QualityController(None).observe(0, 99.0) is None


def test_slow_stage_degrades_then_recovers(setup):
    pred = setup["predictor"]
    clock = FakeClock()
    runner = StreamRunner(pred, window=1.0, hop=0.5, tolerance=0.1, latency_budget=0.5, clock=clock)
    real = pred.predict_features
    slow_until = 5                                        # windows 0-4: the model stage takes 2 s

    def slow_predict(feats):
        clock.t += 2.0 if runner.buffer.stats["windows"] <= slow_until else 0.01
        return real(feats)

    pred.predict_features = slow_predict
    try:
        sources, _ = open_sources(pred.modalities, 16000, video=setup["clip"])
        rows = list(runner.run(sources, realtime=False))
    finally:
        pred.predict_features = real
    levels = [r["quality"]["level"] for r in rows]
    assert levels[:6] == [0, 1, 2, 3, 4, 4]                  # one step down per late window, to the floor
    assert levels[-1] == 0, levels
    recover = levels[5:]
    assert all(b in (a, a - 1) for a, b in zip(recover, recover[1:]))   # back up one step at a time
    for r in rows:
        level = LEVELS[r["quality"]["level"]]
        assert r["quality"]["name"] == level.name
        assert r["frames"] == max(1, round(level.frame_fraction * pred.config.face.num_frames))
    dropped = [r for r in rows if r["quality"]["level"] == 4]
    assert dropped and all(any("dropped at quality level 4" in v for v in r["missing"].values()) for r in dropped)
    assert all(len(r["modalities"]) >= 1 and r["label"] for r in dropped)
    summary = runner.summary()["quality"]
    assert summary["latency_budget"] == 0.5 and summary["changes"][0]["to"] == 1
    assert sum(summary["windows_per_level"].values()) == len(rows)


def test_level_zero_is_unchanged(setup):
    """Without a budget every window is level 0 and equals the runner without adaptation."""
    pred = setup["predictor"]
    a = StreamRunner(pred, window=1.0, hop=0.5, latency_budget=None)
    b = StreamRunner(pred, window=1.0, hop=0.5, latency_budget=100.0)
    rows = []
    for runner in (a, b):
        sources, _ = open_sources(pred.modalities, 16000, video=setup["mute"])
        rows.append([r["probabilities"] for r in runner.run(sources, realtime=False)])
    assert rows[0] == rows[1] and len(rows[0]) == 5


def test_cheaper_levels_change_the_faces(setup):
    from emotion_mx.config import FaceConfig
    from emotion_mx.inference.testing import face_image
    from emotion_mx.inference.window import FaceCache
    cache = FaceCache(FaceConfig(num_frames=4, size=48, detect=True))
    img = face_image(0.3, 240)
    full, found = cache(0.0, img)
    cache.set_quality(frame_side=160, detect_every=3)
    small = [cache(t, face_image(t, 240)) for t in (0.1, 0.2, 0.3)]
    assert all(c.shape == full.shape for c, _ in small)
    assert cache.misses == 4 and cache(0.1, img) is small[0]          # cached per level


def test_audio_only_and_video_only_files(setup):
    pred = setup["predictor"]
    runner = StreamRunner(pred, window=1.0, hop=0.5)
    sources, live = open_sources(pred.modalities, 16000, audio=setup["wav"])
    assert not live and [type(s) for s in sources] == [AudioPipe]
    rows = list(runner.run(sources, realtime=False))
    assert len(rows) == 5 and all(r["modalities"] == ["audio"] and r["frames"] == 0 for r in rows)
    assert all(r["missing"]["video"] == "no frame in the window" for r in rows)
    sources, _ = open_sources(pred.modalities, 16000, video=setup["mute"])
    rows = list(StreamRunner(pred, window=1.0, hop=0.5).run(sources, realtime=False))
    assert rows and all(r["modalities"] == ["video"] for r in rows)


def test_cli_audio_only_with_budget(setup, tmp_path):
    import json
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = str(tmp_path / "a.jsonl")
    proc = subprocess.run([sys.executable, os.path.join(root, "tools", "stream.py"), "--model", setup["model"],
                           "--audio", setup["wav"], "--window", "1", "--hop", "0.5", "--no-realtime",
                           "--latency-budget", "30", "--out", out], capture_output=True, text=True, cwd=root)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(l) for l in open(out)]
    rows, summary = lines[:-1], lines[-1]["summary"]
    assert len(rows) == 5 and all(r["modalities"] == ["audio"] and r["quality"]["level"] == 0 for r in rows)
    assert summary["quality"]["latency_budget"] == 30 and summary["quality"]["windows_per_level"] == {"full": 5}


def test_push_all_skips_a_backlog(setup):
    """Events that make many windows ready at once (the stream fell behind): only the newest
    ``max_windows`` are processed, the rest counted."""
    pred = setup["predictor"]
    runner = StreamRunner(pred, window=1.0, hop=0.5)
    runner.start(["audio"])
    chunks = [ev for ev in AudioPipe(setup["wav"], 16000) if ev.kind == "audio" and hasattr(ev, "samples")]
    rows = runner.push_all(chunks[:10])                  # 1.0 s: the first window
    assert [r["start"] for r in rows] == [0.0]
    rows = runner.push_all(chunks[10:], max_windows=1)   # 1.0-3.0 s at once: windows 0.5 ... 2.0 ready
    assert [r["start"] for r in rows] == [2.0] and runner.skipped_windows == 3
    assert runner.summary()["skipped_windows"] == 3
