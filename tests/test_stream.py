"""tools/stream.py: sources, synchronisation, windows == predict on the same segment, summary."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from emotion_mx.errors import EmotionMXError
from emotion_mx.inference.predict import Predictor, media_item
from emotion_mx.inference.sources import AudioChunk, AudioPipe, End, Frame, VideoFrames, merge
from emotion_mx.inference.stream import StreamRunner, open_sources
from emotion_mx.inference.subtitles import parse_subtitles, read_subtitles, text_between
from emotion_mx.inference.sync import SyncBuffer
from emotion_mx.inference.testing import make_exported, write_av_clip, write_face_clip, write_srt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "tools", "stream.py")
W, HOP, TOL = 2.0, 0.5, 0.1
SILENT = (2.0, 4.3)            # the clip's audio is exact zeros here
CUES = [(0.2, 1.4, "I hate this\nso much"), (2.1, 3.2, "what a wonderful day"), (3.6, 4.1, "the report")]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("stream")
    model = str(d / "export")
    make_exported(model, str(d), audio_frames=200)
    clip, _ = write_av_clip(str(d / "clip.avi"), 4.3, fps=10, silent=[SILENT])
    srt = write_srt(str(d / "subs.srt"), CUES)
    return {"model": model, "clip": clip, "srt": srt, "dir": d, "predictor": Predictor(model)}


def _run(setup, transform=None, realtime=False, video=None):
    pred = setup["predictor"]
    runner = StreamRunner(pred, window=W, hop=HOP, tolerance=TOL, cues=read_subtitles(setup["srt"]))
    sources, live = open_sources(pred.modalities, 16000, video=video or setup["clip"])
    rows = list(runner.run(sources, live=live, realtime=realtime, transform=transform))
    return rows, runner


@pytest.fixture(scope="module")
def streamed(setup):
    return _run(setup)


def test_window_timestamps_and_tail(streamed):
    rows, _ = streamed
    # full windows k*hop .. k*hop+W up to 4.0, then the partial tail [2.5, 4.3) (>= W/2 long)
    assert [(r["start"], r["end"], r["partial"]) for r in rows] == \
        [(k * HOP, k * HOP + W, False) for k in range(5)] + [(2.5, 4.3, True)]
    assert [r["window"] for r in rows] == list(range(6))
    for r in rows:
        assert r["label"] in r["probabilities"] and abs(sum(r["probabilities"].values()) - 1) < 1e-4
        assert r["latency_ms"] > 0 and r["smoothed"]["label"] in r["probabilities"]


def test_windows_equal_predict_on_same_segment(setup, streamed):
    """Each window's output == Predictor (extract_item) on the same file segment."""
    rows, _ = streamed
    pred, cues = setup["predictor"], read_subtitles(setup["srt"])
    for r in rows:
        text = text_between(cues, r["start"], r["end"]) or None
        audio = setup["clip"] if "audio" in r["modalities"] else None      # silent → audio missing
        item, root = media_item(audio=audio, video=setup["clip"], text=text, start=r["start"], end=r["end"])
        ref = pred.predict_items([item], root=root)[0]
        got = np.array([r["probabilities"][l] for l in ref.labels])
        np.testing.assert_allclose(got, ref.probabilities, atol=2e-6, err_msg=f"window {r['window']}")
        assert list(ref.modalities) == r["modalities"]


def test_silent_stretch_marks_audio_missing(streamed):
    rows, runner = streamed
    by_start = {r["start"]: r for r in rows}
    assert "audio" in by_start[1.5]["modalities"]                 # half silent: audio present
    for s in (2.0, 2.5):                                          # entirely silent
        assert "audio" not in by_start[s]["modalities"] and "silent" in by_start[s]["missing"]["audio"]
        assert by_start[s]["label"] is not None                   # video + text still predict
    assert runner.summary()["windows_missing"]["audio"] == 2


def test_sync_pairs_frames_with_audio(setup):
    pred = setup["predictor"]
    buf = SyncBuffer(["audio", "video"], window=W, hop=HOP, tolerance=TOL, sample_rate=16000, num_frames=4)
    sources = [VideoFrames(setup["clip"]), AudioPipe(setup["clip"], 16000)]
    windows = [w for ev in merge(sources) for w in buf.push(ev)] + buf.finish()
    assert len(windows) == 6
    for w in windows:
        assert len(w.images) == 4
        assert all(abs(f - c) <= TOL for f, c in zip(w.frame_times, w.sample_times))
        assert all(w.start - TOL <= f < w.end for f in w.frame_times)
        expected = int(round(w.end * 16000)) - int(round(w.start * 16000))
        if w.wave is not None:
            assert len(w.wave) == expected
    assert buf.stats["late_frames"] == buf.stats["late_audio_chunks"] == 0


def test_gap_in_frames(setup):
    """Frames dropped for 0.9-3.1 s: no crash; the window inside the gap has no video."""
    def drop(events):
        return (e for e in events if not (isinstance(e, Frame) and 0.9 <= e.t < 3.1))
    rows, runner = _run(setup, transform=drop)
    assert len(rows) == 6
    gap = [r for r in rows if r["start"] == 1.0][0]
    assert gap["frames"] == 0 and "video" in gap["missing"] and "video" not in gap["modalities"]
    edge = [r for r in rows if r["start"] == 0.5][0]
    assert 0 < edge["frames"] < 4                                    # only samples near real frames
    assert runner.summary()["dropped"]["unpaired_frame_samples"] > 0


def test_late_data_is_dropped_and_counted():
    buf = SyncBuffer(["audio", "video"], window=1.0, hop=0.5, tolerance=0.1, sample_rate=100, num_frames=2)
    img = np.zeros((8, 8, 3), np.uint8)
    out = []
    for k in range(12):                                             # audio 0..1.2 s, video only to 0.3 s
        out += buf.push(AudioChunk(k * 0.1, np.full(10, 0.5, np.float32), 100))
        if k < 4:
            out += buf.push(Frame(k * 0.1, img, 0.1))
    assert [w.start for w in out] == [0.0]                           # emitted once audio is 0.1 s past the end
    assert buf.push(Frame(0.7, img, 0.1)) == []                      # inside the emitted window: late
    assert buf.stats["late_frames"] == 1
    out += buf.push(Frame(1.05, img, 0.1))                           # new data is accepted
    buf.push(End("audio", 1.2))
    buf.push(End("video", 1.15))
    tail = buf.finish()
    assert buf.stats["late_frames"] == 1 and [w.start for w in tail] == [0.5]
    assert tail[0].frame_times == [1.05]                            # the late 0.7 s frame was not kept


def test_realtime_gives_identical_output(setup, tmp_path):
    clip, _ = write_av_clip(str(tmp_path / "short.avi"), 1.2, fps=10)
    kw = dict(window=1.0, hop=0.5, tolerance=TOL)
    pred = setup["predictor"]
    res = {}
    for realtime in (False, True):
        runner = StreamRunner(pred, **kw)
        sources, _ = open_sources(pred.modalities, 16000, video=clip)
        res[realtime] = list(runner.run(sources, realtime=realtime))
        if realtime:
            assert runner.pacer.slept > 0.5                         # it really waited for the clock
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("latency_ms", "lag_ms")} for r in rows]
    assert strip(res[False]) == strip(res[True]) and len(res[True]) == 2


def test_video_without_audio_track(setup, tmp_path):
    clip = write_face_clip(str(tmp_path / "mute.avi"), 2.5, fps=10)
    rows, runner = _run(setup, video=clip)
    assert rows and all("audio" not in r["modalities"] for r in rows)
    assert all(r["missing"]["audio"] == "no audio in the window" for r in rows)


def test_subtitle_parsing():
    vtt = ("\ufeffWEBVTT\n\nNOTE a comment\n\nintro\n00:01.500 --> 00:02.000 align:start\n<i>Hello</i> there\n"
           "general\n\n2\n00:00:03.250 --> 00:00:04.000\n{\\an8}Bye\n")
    cues = parse_subtitles(vtt)
    assert [(c.start, c.end, c.text) for c in cues] == [(1.5, 2.0, "Hello there general"), (3.25, 4.0, "Bye")]
    srt = "\ufeff1\r\n00:00:00,200 --> 00:00:01,5\r\nline one\r\nline two\r\n\r\n"
    assert [(c.start, c.end, c.text) for c in parse_subtitles(srt)] == [(0.2, 1.5, "line one line two")]
    assert text_between(cues, 1.9, 3.3) == "Hello there general Bye" and text_between(cues, 2.0, 3.25) == ""


def test_cli_summary_and_errors(setup, tmp_path):
    out = str(tmp_path / "preds.jsonl")
    proc = subprocess.run([sys.executable, TOOL, "--model", setup["model"], "--video", setup["clip"],
                           "--transcript", setup["srt"], "--no-realtime", "--out", out],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(l) for l in open(out)]
    summary = lines[-1]["summary"]
    assert len(lines) == 7 and summary["windows"] == 6 and summary["partial_windows"] == 1
    assert summary["window_latency_ms"]["median"] > 0 and summary["window_latency_ms"]["p95"] >= summary["window_latency_ms"]["median"]
    assert 0 < summary["realtime_factor"] < 1 and summary["stream_seconds"] == pytest.approx(4.3)
    assert json.loads(proc.stdout)["summary"]["windows"] == 6
    bad = subprocess.run([sys.executable, TOOL, "--model", setup["model"], "--video", setup["clip"],
                          "--transcript", str(tmp_path / "none.srt")], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: transcript file not found")
    assert "Traceback" not in bad.stderr
    assert summary["faces"]["detect_every"] == 5            # the CLI default: tracking between detections
    env = {k: v for k, v in os.environ.items() if k != "EMOTION_MX_YUNET_MODEL"}
    bad = subprocess.run([sys.executable, TOOL, "--model", setup["model"], "--video", setup["clip"],
                          "--face-detector", "yunet"], capture_output=True, text=True, cwd=ROOT, env=env)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("error: face.detector 'yunet' needs face_detection_yunet")
    corrupt = tmp_path / "corrupt.wav"                    # a file no decoder reads: an error, not 0 windows
    corrupt.write_bytes(b"RIFF garbage, not audio")
    bad = subprocess.run([sys.executable, TOOL, "--model", setup["model"], "--audio", str(corrupt),
                          "--no-realtime"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("error: no audio or video could be read")
    assert '"summary"' not in bad.stdout


def test_open_sources_errors(setup):
    with pytest.raises(EmotionMXError, match="give a media source"):
        open_sources(("audio",), 16000)
    with pytest.raises(EmotionMXError, match="not both"):
        open_sources(("audio",), 16000, video=setup["clip"], camera=0)
    with pytest.raises(EmotionMXError, match="cannot be opened|no camera"):
        open_sources(("video",), 16000, camera=7)
    with pytest.raises(EmotionMXError, match="not found"):
        open_sources(("video",), 16000, video="/nonexistent.avi")
