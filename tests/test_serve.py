"""The REST service over HTTP on loopback: real uvicorn processes (python -m emotion_mx.serve),
models exported in this session, httpx as the client."""
import asyncio
import base64
import glob
import os
import subprocess
import sys
import time

import httpx
import pytest

from emotion_mx.inference.testing import face_image, tone_wave, write_face_clip, write_wav
from emotion_mx.serve.testing import Server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def models(exported_models):
    return exported_models


@pytest.fixture(scope="module")
def servers(models, tmp_path_factory):
    """Three services started together (their start-ups overlap):

    * ``main``: tri-modal fp32 primary, INT8 fallback, 1 MB body limit;
    * ``failing``: a primary that always fails (fault injection), audio-only fallback;
    * ``slow``: an audio-only primary that hangs 2 s per call, 0.4 s timeout, no fallback,
      at most 2 requests in progress.
    """
    logs = tmp_path_factory.mktemp("serve_logs")
    started = {
        "main": Server(["--model", models["tri"], "--fallback", models["int8"], "--max-request-mb", "1"],
                       str(logs / "main.log")),
        "failing": Server(["--model", models["tri"], "--fallback", models["audio"], "--retries", "1"],
                          str(logs / "failing.log"), faults="fail=1.0"),
        "slow": Server(["--model", models["audio"], "--timeout", "0.4", "--max-queue", "2"],
                       str(logs / "slow.log"), faults="slow=1.0,slow_s=2"),
    }
    try:
        for s in started.values():
            s.wait_ready()
        yield {k: s.url for k, s in started.items()}
    finally:
        for s in started.values():
            s.stop()


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    import cv2
    d = tmp_path_factory.mktemp("serve_media")
    out = {"wav": write_wav(str(d / "a.wav"), tone_wave(1.2)), "png": str(d / "face.png"),
           "clip": write_face_clip(str(d / "face.avi"), 1.0), "silent": write_wav(str(d / "s.wav"), tone_wave(1.0) * 0)}
    cv2.imwrite(out["png"], face_image(0.3))
    return out


def read(path):
    with open(path, "rb") as f:
        return f.read()


def b64(path):
    return base64.b64encode(read(path)).decode()


def metric(url, name, **labels):
    text = httpx.get(url + "/metrics").text
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    return 0.0


# -- answers ------------------------------------------------------------------------------

def test_real_clips(servers, real_data):
    """An EmoDB wav, a CK+ face and a sentence, as multipart and as JSON."""
    wav = sorted(glob.glob(os.path.join(real_data, "emodb", "wav", "*.wav")))
    png = sorted(glob.glob(os.path.join(real_data, "ckplus48", "*", "*.png")))
    if not wav or not png:
        pytest.skip("no emodb/wav or ckplus48 under EMOTION_MX_DATA")
    url = servers["main"]
    r = httpx.post(url + "/predict", files={"audio": ("clip.wav", read(wav[0])), "image": ("face.png", read(png[0]))},
                   data={"text": "I am so angry"}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["modalities"] == ["audio", "text", "video"]
    assert body["served_by"] == "primary" and body["attempts"] == 1 and body["precision"] == "fp32"
    assert set(body["probabilities"]) == {"anger", "happiness", "neutral", "sadness"}
    assert abs(sum(body["probabilities"].values()) - 1) < 1e-4
    assert body["label"] == max(body["probabilities"], key=body["probabilities"].get)
    assert {"audio", "text", "video", "model", "total"} <= set(body["timings_ms"])
    # the same inputs as JSON with base64 media (no file names: the type is sniffed)
    j = httpx.post(url + "/predict", json={"audio": b64(wav[0]), "image": b64(png[0]), "text": "I am so angry"},
                   timeout=60).json()
    assert j["label"] == body["label"]
    assert j["probabilities"] == pytest.approx(body["probabilities"], abs=1e-6)


def test_same_as_python_api(servers, models, media):
    from emotion_mx import EmotionRecognizer
    want = EmotionRecognizer.load(models["tri"]).predict(audio=media["wav"], video=media["clip"], text="so happy")
    r = httpx.post(servers["main"] + "/predict", files={"audio": ("a.wav", read(media["wav"])),
                                                          "video": ("v.avi", read(media["clip"]))},
                   data={"text": "so happy"}, timeout=60).json()
    assert r["probabilities"] == pytest.approx(want.probabilities, abs=1e-5)
    assert r["modalities"] == ["audio", "text", "video"]


def test_runtime_option_serves_through_onnxruntime(models, media, tmp_path):
    """``--runtime onnxruntime``: the service runs the folder's model.onnx, says so in GET
    /model, and answers what the Python API answers through MXNet."""
    import shutil
    from emotion_mx import EmotionRecognizer
    from emotion_mx.deploy.onnx_export import export_onnx
    from emotion_mx.errors import EmotionMXError
    from emotion_mx.serve.settings import ServeSettings
    d = str(tmp_path / "tri_onnx")
    shutil.copytree(models["tri"], d)
    export_onnx(d)
    mx_rec = EmotionRecognizer.load(d, runtime="mxnet")
    assert (mx_rec.runtime, EmotionRecognizer.load(d, runtime="onnxruntime").runtime) == ("mxnet", "onnxruntime")
    want = mx_rec.predict(audio=media["wav"], text="so happy")
    # the fallback has no model.onnx: it takes its own fastest runtime instead of failing the start
    server = Server(["--model", d, "--runtime", "onnxruntime", "--fallback", models["audio"]], str(tmp_path / "ort.log"))
    try:
        server.wait_ready()
        info = httpx.get(server.url + "/model").json()
        assert (info["primary"]["runtime"], info["fallback"]["runtime"]) == ("onnxruntime", "mxnet")
        r = httpx.post(server.url + "/predict", files={"audio": ("a.wav", read(media["wav"]))},
                       data={"text": "so happy"}, timeout=60).json()
        assert r["probabilities"] == pytest.approx(want.probabilities, abs=1e-4)
    finally:
        server.stop()
    with pytest.raises(EmotionMXError, match="runtime 'tensorrt' is not one of"):
        ServeSettings(model=d, runtime="tensorrt")


def test_batch(servers, media):
    url = servers["main"]
    files = [("audio.0", ("a.wav", read(media["wav"]))), ("image.1", ("f.png", read(media["png"])))]
    r = httpx.post(url + "/predict/batch", files=files, data={"text.1": "great", "text.2": "lonely"}, timeout=60)
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert [x["modalities"] for x in res] == [["audio"], ["text", "video"], ["text"]]
    single = httpx.post(url + "/predict", data={"text": "lonely"}).json()
    assert res[2]["probabilities"] == pytest.approx(single["probabilities"], abs=1e-5)
    j = httpx.post(url + "/predict/batch", json={"items": [{"text": "lonely"}, {"audio": b64(media["wav"])}]}).json()
    assert [x["modalities"] for x in j["results"]] == [["text"], ["audio"]]
    assert j["results"][0]["probabilities"] == pytest.approx(single["probabilities"], abs=1e-5)


def test_health_ready_model_metrics(servers, models):
    url = servers["main"]
    h = httpx.get(url + "/health").json()
    assert h["status"] == "ok" and h["ready"] is True and isinstance(h["pid"], int)
    assert httpx.get(url + "/ready").json()["ready"] is True
    m = httpx.get(url + "/model").json()
    assert m["primary"]["labels"] == ["anger", "happiness", "neutral", "sadness"]
    assert m["primary"]["modalities"] == ["audio", "text", "video"]
    assert [i["name"] for i in m["primary"]["inputs"]] == ["audio", "audio_mask", "text", "text_mask",
                                                           "video", "video_mask"]
    assert m["fallback"]["precision"] == "int8"
    import mxnet
    assert m["versions"]["mxnet"] == mxnet.__version__
    assert m["limits"]["max_request_bytes"] == 1_000_000
    httpx.post(url + "/predict", data={"text": "hello"})
    assert metric(url, "emotion_mx_served_total", model="primary") >= 1
    assert metric(url, "emotion_mx_requests_total", endpoint="/predict", status="200") >= 1


# -- limits ---------------------------------------------------------------------------------

def test_413_request_too_large(servers):
    url = servers["main"]
    r = httpx.post(url + "/predict", files={"audio": ("big.wav", b"\0" * 1_500_000)})
    assert r.status_code == 413
    assert r.json() == {"error": "payload_too_large",
                        "detail": "request body larger than 1000000 bytes (the service's limit)"}

    def chunks():                                      # no Content-Length: counted while read
        for _ in range(30):
            yield b"x" * 65536
    r = httpx.post(url + "/predict", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"


def test_422_bad_input(servers, media):
    url = servers["main"]
    cases = [
        (dict(files={"audio": ("face.png", read(media["png"]))}), "audio",
         "audio: unsupported media type '.png'; accepted: .wav .flac .ogg .mp3 .m4a .mp4 .avi .mkv .webm .flv .mov"),
        (dict(files={"image": ("notes.txt", b"hello there")}), "image", "image: unsupported media type '.txt'"),
        (dict(files={"audio": ("s.wav", read(media["silent"]))}), "audio", "audio: audio is silent"),
        (dict(json={"audio": "%%% not base64"}), "audio", "audio: not valid base64"),
        (dict(json={"sound": "x"}), "sound", "sound: unknown field"),
        (dict(content=b"{oops", headers={"content-type": "application/json"}), "body", "body: invalid JSON"),
        (dict(content=b"abc", headers={"content-type": "text/plain"}), "body", "body: unsupported content type 'text/plain'"),
        (dict(json={}), "inputs", "inputs: no input given"),
    ]
    for kw, argument, detail in cases:
        r = httpx.post(url + "/predict", timeout=30, **kw)
        assert r.status_code == 422, (kw, r.text)
        body = r.json()
        assert body["error"] == "invalid_input" and body["argument"] == argument
        assert body["detail"].startswith(detail), body
    r = httpx.post(url + "/predict/batch", json={"items": [{"text": "ok"}, {"text": " "}]})
    assert r.status_code == 422
    assert r.json() == {"error": "invalid_input", "argument": "items[1].text", "detail": "items[1].text: no words in the text"}


def test_422_unsupported_modality(servers):
    """The audio-only model refuses text before any model call (the slow primary is not hit)."""
    r = httpx.post(servers["slow"] + "/predict", data={"text": "hello"}, timeout=30)
    assert r.status_code == 422
    assert r.json() == {"error": "invalid_input", "argument": "text",
                        "detail": "text: the model has no text input (it takes audio)"}
    assert metric(servers["slow"], "emotion_mx_model_attempts_total", model="primary", outcome="bad_input") >= 1


def test_timeout_and_429(servers, media):
    """Primary hangs 2 s, timeout 0.4 s, no fallback: 504; a third concurrent request: 429."""
    url = servers["slow"]
    wav = read(media["wav"])

    async def go():
        async with httpx.AsyncClient(timeout=30) as c:
            async def one(delay):
                await asyncio.sleep(delay)
                return await c.post(url + "/predict", files={"audio": ("a.wav", wav)})
            return await asyncio.gather(one(0), one(0.05), one(0.15))
    rs = asyncio.run(go())
    codes = sorted(r.status_code for r in rs)
    assert codes == [429, 504, 504], [r.text for r in rs]
    busy = next(r for r in rs if r.status_code == 429)
    assert busy.headers["retry-after"] == "1"
    assert busy.json() == {"error": "overloaded", "detail": "2 requests in progress (limit 2); retry later"}
    late = next(r for r in rs if r.status_code == 504)
    assert late.json()["error"] == "timeout"
    assert late.json()["detail"] == "the model did not answer within 0.4 s"


# -- fallback and retries -----------------------------------------------------------------

def test_fallback_serves_when_primary_fails(servers, media):
    url = servers["failing"]
    before = metric(url, "emotion_mx_retries_total")
    r = httpx.post(url + "/predict", files={"audio": ("a.wav", read(media["wav"])), "image": ("f.png", read(media["png"]))},
                   data={"text": "so angry"}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["served_by"] == "fallback" and body["model"] == "audio"
    assert body["attempts"] == 3                       # primary, one retry, fallback
    assert body["fallback_reason"] == "primary: InjectedFault: injected fault (EMOTION_MX_SERVE_FAULTS)"
    assert body["modalities"] == ["audio"]             # the audio-only fallback used the audio
    assert metric(url, "emotion_mx_retries_total") == before + 1
    assert metric(url, "emotion_mx_served_total", model="fallback") >= 1
    # nothing the fallback can take: 503 with the reason
    r = httpx.post(url + "/predict", data={"text": "so angry"}, timeout=60)
    assert r.status_code == 503
    assert r.json()["error"] == "model_failed"
    assert r.json()["detail"].endswith("the fallback model takes only audio")


def test_bad_input_is_not_retried(servers):
    url = servers["failing"]
    attempts = metric(url, "emotion_mx_model_attempts_total", model="primary", outcome="bad_input")
    fallbacks = metric(url, "emotion_mx_fallbacks_total")
    r = httpx.post(url + "/predict", files={"audio": ("x.wav", b"RIFF\x10\x00\x00\x00WAVEfmt garbage" * 3)})
    assert r.status_code == 422 and r.json()["argument"] == "audio"
    assert metric(url, "emotion_mx_model_attempts_total", model="primary", outcome="bad_input") == attempts + 1
    assert metric(url, "emotion_mx_fallbacks_total") == fallbacks


def test_engine_timeout_goes_to_fallback_and_flaky_primary_always_answers(models, media):
    """In-process engine: a timed-out primary is answered by the fallback; a primary failing
    30 % of the time still answers every request (retries + fallback)."""
    from emotion_mx.serve.engine import Engine, Faults
    from emotion_mx.serve.settings import ServeSettings

    async def run(engine, n):
        return [await engine.predict([{"audio": media["wav"], "text": "hi"}] if n == 1 else [{"text": "hi"}])
                for _ in range(n)]

    slow = Engine(ServeSettings(model=models["tri"], fallback=models["audio"], timeout=0.3, warmup=False),
                  faults=Faults("slow=1.0,slow_s=0.6"))
    slow.load()
    [(res, info)] = asyncio.run(run(slow, 1))
    assert info == {"served_by": "fallback", "attempts": 2, "fallback_reason": "primary: timed out after 0.3 s"}
    assert res[0].modalities == ("audio",)
    slow.close()

    flaky = Engine(ServeSettings(model=models["tri"], fallback=models["int8"], retries=1, warmup=False),
                   faults=Faults("fail=0.3,seed=1"))
    flaky.load()
    out = asyncio.run(run(flaky, 20))
    assert len(out) == 20 and all(len(res) == 1 and res[0].label for res, _ in out)   # every request answered
    assert any(info["attempts"] > 1 for _, info in out)                 # 0.7 ** 20: some call failed
    for _, info in out:
        assert (info["served_by"], info["attempts"] <= 2) in {("primary", True), ("fallback", False)}
    flaky.close()


def test_serve_extra_missing_is_one_line(tmp_path):
    """Without fastapi the command says which extra to install (one line, exit 2)."""
    blocker = tmp_path / "fastapi.py"
    blocker.write_text("raise ImportError('blocked for the test')\n")
    out = subprocess.run([sys.executable, "-m", "emotion_mx.serve", "--model", str(tmp_path)], cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}"),
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip() == ("error: the REST service needs the optional 'serve' dependencies (blocked for the "
                                  "test); install them with pip install 'emotion_mx[serve]'")


@pytest.mark.slow
def test_ray_serve_two_replicas(models, media, tmp_path):
    """``--ray --replicas 2``: both replicas answer, each with its own loaded model."""
    try:
        import ray.serve  # noqa: F401
    except Exception as e:      # pragma: no cover - depends on the installed extras
        pytest.skip(f"Ray Serve cannot be imported here: {e}")
    server = Server(["--model", models["tri"], "--ray", "--replicas", "2"], str(tmp_path / "ray.log"))
    try:
        server.wait_ready(timeout=240)
        pids = set()
        for _ in range(60):
            pids.add(httpx.get(server.url + "/health", timeout=30).json()["pid"])
            if len(pids) == 2:
                break
        assert len(pids) == 2, "requests never reached a second replica"
        r = httpx.post(server.url + "/predict", files={"audio": ("a.wav", read(media["wav"]))},
                       data={"text": "so happy"}, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["modalities"] == ["audio", "text"] and r.json()["served_by"] == "primary"
        r = httpx.post(server.url + "/predict", data={"sound": "x"}, timeout=60)
        assert r.status_code == 422 and r.json()["argument"] == "sound"
    finally:
        server.stop()
        assert server.proc.returncode is not None


def test_live_page_mounted(servers):
    """The live page (emotion_mx.live) is mounted at /live and uses the served model."""
    pytest.importorskip("emotion_mx.live")
    url = servers["main"]
    page = httpx.get(url + "/live/", timeout=30)
    assert page.status_code == 200 and page.text.lstrip().lower().startswith("<!doctype html>")
    info = httpx.get(url + "/live/info", timeout=60).json()
    assert info["model"] == "tri" and info["modalities"] == ["audio", "text", "video"]
