"""The live page: its router over HTTP/WebSocket (TestClient), and in a real headless Chromium
with fake camera and microphone fed from a clip."""
import json
import os
import shutil
import struct

import numpy as np
import pytest

from emotion_mx.inference.predict import Predictor
from emotion_mx.inference.sources import AudioPipe
from emotion_mx.inference.stream import StreamRunner, open_sources
from emotion_mx.inference.testing import write_av_clip

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = dict(window=1.0, hop=0.5, tolerance=0.1, latency_budget=5.0)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_export):
    d = tmp_path_factory.mktemp("live")
    model = tiny_export
    clip, wave = write_av_clip(str(d / "clip.avi"), 6.0, fps=10)
    real = real_clip(str(d / "real.avi"))
    return {"model": model, "clip": clip, "wave": wave, "dir": d, "real": real}


def real_clip(path):
    """6 s of real media when $EMOTION_MX_DATA is set: three EmoDB utterances (anger,
    happiness, sadness) each shown with a CK+48 face of the same class; else None."""
    import csv
    from emotion_mx.inference.testing import write_corpus_clip
    data = os.environ.get("EMOTION_MX_DATA")
    if not data or not os.path.isdir(os.path.join(data, "emodb")) or not os.path.isdir(os.path.join(data, "ckplus48")):
        return None
    speech = list(csv.DictReader(open(os.path.join(data, "emodb", "labels.csv"), newline="")))
    faces = list(csv.DictReader(open(os.path.join(data, "ckplus48", "labels.csv"), newline="")))
    segments = []
    for emotion, ck in (("anger", "anger"), ("happiness", "happy"), ("sadness", "sadness")):
        wav = next(r["file"] for r in speech if r["emotion"] == emotion)
        png = next(r["file"] for r in faces if r["emotion"] == ck)
        segments.append((os.path.join(data, "emodb", wav), os.path.join(data, "ckplus48", png)))
    return write_corpus_clip(path, segments)[0]


@pytest.fixture(scope="module")
def client(setup):
    from fastapi.testclient import TestClient
    from emotion_mx.live import create_app
    return TestClient(create_app(setup["model"], **SETTINGS))


def cli_rows(setup, **kw):
    pred = Predictor(setup["model"])
    runner = StreamRunner(pred, **SETTINGS)
    sources, _ = open_sources(pred.modalities, 16000, **kw)
    return list(runner.run(sources, realtime=False))


def strip(rows):
    return [{k: v for k, v in r.items() if k not in ("latency_ms", "lag_ms", "type", "quality")} for r in rows]


def receive_all(ws):
    rows, summary = [], None
    while True:
        msg = json.loads(ws.receive_text())
        if msg["type"] == "window":
            rows.append(msg)
        elif msg["type"] == "summary":
            summary = msg
            break
        else:
            raise AssertionError(msg)
    return rows, summary


def test_page_info_and_static(client):
    page = client.get("/live/")
    assert page.status_code == 200 and "live.js" in page.text and "<canvas id=\"timeline\"" in page.text
    assert client.get("/live/static/live.js").status_code == 200
    assert client.get("/live/static/../server.py").status_code == 404
    info = client.get("/live/info").json()
    assert info["modalities"] == ["audio", "text", "video"] and info["sample_rate"] == 16000
    assert info["latency_budget"] == 5.0 and info["levels"][0] == "full"


def test_uploaded_file_streams_like_the_cli(setup, client):
    with open(setup["clip"], "rb") as f:
        up = client.post("/live/upload", files={"file": ("clip.avi", f, "video/x-msvideo")}).json()
    with client.websocket_connect("/live/ws") as ws:
        ws.send_text(json.dumps({"type": "start", "file": up["id"], "realtime": False}))
        rows, summary = receive_all(ws)
    assert strip(rows) == strip(cli_rows(setup, video=setup["clip"])) and len(rows) == 11
    assert summary["windows"] == 11 and all(r["quality"]["level"] == 0 for r in rows)


def test_live_pcm_over_websocket_equals_audio_only_cli(setup, client, tmp_path):
    """Microphone-style chunks over the socket give the CLI's audio-only windows exactly."""
    from emotion_mx.inference.testing import write_wav
    wav = write_wav(str(tmp_path / "a.wav"), setup["wave"], 16000)
    with client.websocket_connect("/live/ws") as ws:
        ws.send_text(json.dumps({"type": "start", "audio": True, "video": False, "catch_up": False}))
        for ch in AudioPipe(wav, 16000, chunk_seconds=0.128):
            if ch.kind == "audio" and hasattr(ch, "samples"):
                ws.send_bytes(struct.pack("<cd", b"a", ch.t) + ch.samples.astype("<f4").tobytes())
        ws.send_text(json.dumps({"type": "stop"}))
        rows, summary = receive_all(ws)
    assert strip(rows) == strip(cli_rows(setup, audio=wav)) and len(rows) == 11


def test_no_model_and_bad_upload(setup, client):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from emotion_mx.live import router
    app = FastAPI()
    app.include_router(router, prefix="/live")
    os.environ.pop("EMOTION_MX_LIVE_MODEL", None)
    r = TestClient(app).get("/live/info")
    assert r.status_code == 503 and "no model" in r.json()["detail"]
    with client.websocket_connect("/live/ws") as ws:
        ws.send_text(json.dumps({"type": "start", "file": "0123456789abcdef" * 2}))
        assert json.loads(ws.receive_text()) == {"type": "error", "field": "file", "error": "unknown upload id "
                                                 "(upload the file first; an id streams once)"}
        assert ws.receive()["code"] == 1008
    with client.websocket_connect("/live/ws") as ws:
        ws.send_text(json.dumps({"type": "start", "file": "nope"}))
        assert json.loads(ws.receive_text()) == {"type": "error", "field": "file", "error": "expected the id POST "
                                                 "/live/upload answered (32 hex digits)"}


# -- a real browser ----------------------------------------------------------------------------

def test_browser_camera_and_microphone(setup, tmp_path):
    from emotion_mx.live import browser, create_app
    reason = browser.missing()
    if reason:
        pytest.skip(reason)
    clip = setup["real"] or setup["clip"]           # real EmoDB + CK+ media when the data is there
    shot = str(tmp_path / "live.png")               # the test artifact
    with browser.Server(create_app(setup["model"], **SETTINGS)) as url:
        rows, summary, error = browser.live_session(url, clip, str(tmp_path), windows=9, screenshot=shot)
    if os.environ.get("EMOTION_MX_LIVE_SCREENSHOT"):
        shutil.copy(shot, os.environ["EMOTION_MX_LIVE_SCREENSHOT"])
    assert error is None and len(rows) >= 9, (error, len(rows))
    assert summary and summary["windows"] == len(rows)
    assert all(set(r["modalities"]) == {"audio", "video"} for r in rows[:8])
    assert all(r["quality"]["name"] and r["latency_ms"] > 0 for r in rows)
    ref = cli_rows(setup, video=clip)
    labels = list(ref[0]["probabilities"])
    by_index = {r["window"]: r for r in ref}                 # same window grid (skipped ones absent)
    pairs = [(r, by_index[r["window"]]) for r in rows if r["window"] in by_index and r["window"] < 8]
    assert len(pairs) >= 6
    page = np.array([[r["probabilities"][l] for l in labels] for r, _ in pairs])
    cli = np.array([[c["probabilities"][l] for l in labels] for _, c in pairs])
    print("page mean", page.mean(0).round(3), "cli mean", cli.mean(0).round(3))
    print("per-window max abs diff", np.abs(page - cli).max(1).round(3))
    assert np.abs(page.mean(0) - cli.mean(0)).max() < 0.05        # resampled audio, JPEG frames
    assert np.abs(page - cli).max() < 0.1
    assert os.path.getsize(shot) > 10000


def test_browser_with_api_key(setup, tmp_path):
    """With an API key the page reads it from the address's #key=... fragment, sends it as
    X-API-Key to /info and in the WebSocket's start message, and streams as without one."""
    from emotion_mx.live import browser, create_app
    reason = browser.missing()
    if reason:
        pytest.skip(reason)
    key = "browser-key-0123"
    with browser.Server(create_app(setup["model"], api_key=key, **SETTINGS)) as url:
        rows, summary, error = browser.live_session(url + f"#key={key}", setup["clip"], str(tmp_path), windows=3)
    assert error is None and len(rows) >= 3 and summary["windows"] == len(rows), (error, len(rows))
