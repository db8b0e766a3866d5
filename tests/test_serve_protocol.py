"""The REST service at its edge: every error in the service's JSON format (also the framework's
own), no absolute server paths, JSON nesting bounded, client disconnects handled quietly, the
API key, CORS and the bind check.  In-process (FastAPI TestClient on the real app) except where
a real server is needed (a client that goes away, the command line).  Property-based part:
random bodies (Hypothesis; EMOTION_MX_FUZZ_EXAMPLES raises the number of examples)."""
import base64
import json
import os
import re
import socket
import subprocess
import sys
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as hs

from emotion_mx.inference.testing import tone_wave, write_wav
from emotion_mx.serve.testing import Server, memory_bound

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "serve-test-key-0123"
FUZZ = int(os.environ.get("EMOTION_MX_FUZZ_EXAMPLES", "0"))
ABS_PATH = re.compile(r"(?<![\w.:/])/(tmp|home|work|root|usr|var|opt|srv|mnt)/")


def make_client(model, **kw):
    from fastapi.testclient import TestClient
    from emotion_mx.serve.app import create_app
    from emotion_mx.serve.settings import ServeSettings
    client = TestClient(create_app(ServeSettings(model=model, warmup=False, max_request_bytes=2_000_000, **kw)),
                        raise_server_exceptions=False)
    client.__enter__()                            # the lifespan: load the model
    for _ in range(600):
        if client.get("/ready", headers={"X-API-Key": kw.get("api_key") or ""}).status_code == 200:
            return client
        time.sleep(0.1)
    raise RuntimeError("the model did not load")


@pytest.fixture(scope="module")
def client(tiny_export):
    c = make_client(tiny_export)
    yield c
    c.__exit__(None, None, None)


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    return write_wav(str(tmp_path_factory.mktemp("serve_protocol") / "a.wav"), tone_wave(1.2))


def check_error(r, status, code=None, argument=None):
    """An answer in the service's format: {"error", "detail"[, "argument"]}, no absolute path."""
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) <= {"error", "detail", "argument", "attempts"} and {"error", "detail"} <= set(body), body
    assert isinstance(body["detail"], str) and "\n" not in body["detail"]
    assert not ABS_PATH.search(r.text), r.text
    if code:
        assert body["error"] == code, body
    if argument:
        assert body.get("argument") == argument, body
    return body


# -- the cases of issue 24 ----------------------------------------------------------------------

def test_deeply_nested_json_is_a_400_in_our_format(client):
    """A 400 KB body of nested brackets gave HTTP 500 (RecursionError in the JSON decoder)."""
    for raw in (b"[" * 400_000, b'{"a":' * 80_000, b"[" * 40 + b"]" * 40):
        for path in ("/predict", "/predict/batch"):
            r = client.post(path, content=raw, headers={"content-type": "application/json"})
            body = check_error(r, 400, "bad_request", "body")
            assert body["detail"] == "body: JSON nested deeper than 32 levels"
    # brackets inside strings are text, not nesting
    r = client.post("/predict", json={"text": "[" * 1000 + " so angry"})
    assert r.status_code == 200, r.text


def test_multipart_without_boundary_in_our_format(client):
    r = client.post("/predict", content=b"--x\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nhi\r\n--x--\r\n",
                    headers={"content-type": "multipart/form-data"})
    body = check_error(r, 400, "bad_request", "body")
    assert body["detail"].startswith("body: malformed multipart/form-data body (Missing boundary in multipart)")


def test_framework_errors_in_our_format(client):
    check_error(client.get("/nope"), 404, "not_found")
    assert client.get("/nope").json()["detail"] == "no such endpoint: GET /nope"
    body = check_error(client.get("/predict"), 405, "method_not_allowed")
    assert body["detail"] == "GET is not allowed on /predict"
    check_error(client.post("/live/upload", data={"x": "1"}), 422, "invalid_input", "file")


def test_a_bug_is_a_500_in_our_format():
    """Whatever slips through is still answered in the format (and logged with its traceback)."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from emotion_mx.serve.http import install_error_handlers
    app = FastAPI()
    install_error_handlers(app)
    app.add_api_route("/boom", lambda: 1 / 0)
    r = TestClient(app, raise_server_exceptions=False).get("/boom")
    assert r.status_code == 500 and r.json() == {"error": "internal_error",
                                                 "detail": "internal error (logged on the server)"}


def test_no_absolute_paths_in_answers(client, tiny_export, wav):
    """A 422 detail named the request's temporary file; /model named the export's run folder."""
    bad_wav = b"RIFF\x10\x00\x00\x00WAVEfmt garbage" * 3
    cases = [dict(files={"audio": ("x.wav", bad_wav)}),
             dict(json={"audio": base64.b64encode(bad_wav).decode()}),
             dict(files={"video": ("v.mp4", os.urandom(3000))}),
             dict(files={"image": ("f.png", b"\x89PNG\r\n\x1a\n" + os.urandom(200))})]
    for kw in cases:
        r = client.post("/predict", **kw)
        body = check_error(r, 422, "invalid_input")
        assert "emx-req-" not in body["detail"], body
    m = client.get("/model")
    assert m.status_code == 200 and not ABS_PATH.search(m.text) and tiny_export not in m.text
    assert m.json()["primary"]["folder"] == os.path.basename(tiny_export)


def test_scrub():
    from emotion_mx.serve.http import scrub
    assert scrub("audio: cannot decode /tmp/emx-req-1/0.audio.wav (x)") == "audio: cannot decode 0.audio.wav (x)"
    assert scrub({"a": ["run at /work/runs/r1/", "audio/wav", "http://h/x/y", "C:\\Users\\me\\m.json"]}) == \
        {"a": ["run at r1", "audio/wav", "http://h/x/y", "m.json"]}


def test_client_disconnect_mid_body_is_quiet(tiny_export, tmp_path):
    """A client that sends half its body and goes away left a server traceback."""
    server = Server(["--model", tiny_export, "--no-warmup"], str(tmp_path / "serve.log"))
    try:
        server.wait_ready()
        for ctype in ("application/json", "multipart/form-data; boundary=xyz"):
            with socket.create_connection(("127.0.0.1", server.port)) as s:
                s.sendall(f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
                          "Content-Length: 100000\r\n\r\n".encode() + b'--xyz\r\n{"text": "' + b"a" * 1000)
        want = 2.0
        for _ in range(300):                      # wait until the server has seen both go
            got = sum(float(line.split()[-1]) for line in httpx.get(server.url + "/metrics").text.splitlines()
                      if line.startswith('emotion_mx_requests_total{endpoint="/predict",status="400"}'))
            if got >= want:
                break
            time.sleep(0.1)
        assert got >= want
        assert httpx.get(server.url + "/health").json()["status"] == "ok"
    finally:
        server.stop()
    log = server.tail(100000)
    assert "Traceback" not in log and "Exception in ASGI" not in log, log


# -- authentication, CORS, binding ------------------------------------------------------------------

def test_api_key(tiny_export):
    c = make_client(tiny_export, api_key=KEY)
    try:
        assert c.get("/health").status_code == 200 and c.get("/ready").status_code == 200
        for path, method in (("/predict", "post"), ("/predict/batch", "post"), ("/model", "get"),
                             ("/metrics", "get"), ("/docs", "get"), ("/openapi.json", "get"), ("/live/info", "get")):
            r = getattr(c, method)(path)
            check_error(r, 401, "unauthorized")
            assert r.headers["www-authenticate"] == "Bearer"
        for headers in ({"Authorization": "Bearer nope-nope-nope"}, {"X-API-Key": KEY[:-1]},
                        {"Authorization": KEY}, {"X-API-Key": ""}):
            check_error(c.post("/predict", data={"text": "hi"}, headers=headers), 401, "unauthorized")
        for headers in ({"Authorization": f"Bearer {KEY}"}, {"X-API-Key": KEY}):
            r = c.post("/predict", data={"text": "so happy"}, headers=headers)
            assert r.status_code == 200 and r.json()["modalities"] == ["text"], r.text
    finally:
        c.__exit__(None, None, None)


def test_cors_closed_by_default_and_opened_by_origin(client, tiny_export):
    pre = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    r = client.options("/predict", headers=pre)
    assert "access-control-allow-origin" not in r.headers
    assert "access-control-allow-origin" not in client.post("/predict", data={"text": "hi"},
                                                            headers={"Origin": "https://app.example"}).headers
    c = make_client(tiny_export, cors_origins=("https://app.example",))
    try:
        r = c.options("/predict", headers=pre)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example"
        r = c.options("/predict", headers=dict(pre, Origin="https://evil.example"))
        assert r.headers.get("access-control-allow-origin") != "https://evil.example"
    finally:
        c.__exit__(None, None, None)


def test_public_bind_needs_a_key_or_no_auth(tmp_path):
    """Refused in one line before anything loads or binds (the model folder need not exist)."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("EMOTION_MX_API_KEY", None)
    for module in ("emotion_mx.serve", "emotion_mx.live"):
        out = subprocess.run([sys.executable, "-m", module, "--model", str(tmp_path), "--host", "0.0.0.0"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 2, out
        assert out.stderr.strip() == ("error: refusing to listen on 0.0.0.0 without authentication: pass --api-key "
                                      "KEY (or set EMOTION_MX_API_KEY), or --no-auth to serve every client that "
                                      "can reach the port")
        out = subprocess.run([sys.executable, "-m", module, "--model", str(tmp_path), "--no-auth", "--api-key", KEY],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and out.stderr.strip() == "error: give --api-key or --no-auth, not both"


# -- property-based -------------------------------------------------------------------------------

json_scalar = hs.one_of(hs.none(), hs.booleans(), hs.integers(-2 ** 70, 2 ** 70),
                        hs.floats(allow_nan=True, allow_infinity=True), hs.text(max_size=12))
json_value = hs.recursive(json_scalar, lambda c: hs.one_of(hs.lists(c, max_size=3),
                                                           hs.dictionaries(hs.text(max_size=8), c, max_size=3)),
                          max_leaves=10)
FIELDS = ["audio", "image", "video", "text", "start", "end", "lang", "items", "data", "sound"]
MEDIA = hs.one_of(hs.binary(max_size=64), hs.sampled_from([b"RIFF\x00\x00\x00\x00WAVEfmt ", b"\x89PNG\r\n\x1a\n",
                                                           b"\xff\xd8\xff\xe0", b"\x00\x00\x00\x18ftypmp42"]))
item = hs.dictionaries(hs.sampled_from(FIELDS), hs.one_of(
    json_value, MEDIA.map(lambda b: base64.b64encode(b).decode()),
    hs.fixed_dictionaries({"data": MEDIA.map(lambda b: base64.b64encode(b).decode())},
                          optional={"filename": hs.text(max_size=12)})), max_size=4)
json_body = hs.one_of(item, hs.fixed_dictionaries({"items": hs.lists(item, max_size=3)}), json_value,
                      hs.integers(1, 3000).map(lambda n: "[" * n))
raw_body = hs.tuples(hs.sampled_from(["application/json", "multipart/form-data", "multipart/form-data; boundary=b",
                                      "application/x-www-form-urlencoded", "text/plain", ""]),
                     hs.one_of(hs.binary(max_size=200),
                               hs.lists(hs.tuples(hs.sampled_from(FIELDS + ["audio.0", "text.1", "x.y"]),
                                                  hs.binary(max_size=40)), max_size=3).map(
                                   lambda parts: b"".join(b"--b\r\nContent-Disposition: form-data; name=\"" + k.encode()
                                                          + b"\"; filename=\"f.wav\"\r\n\r\n" + v + b"\r\n"
                                                          for k, v in parts) + b"--b--\r\n")))


def check_answer(r):
    assert r.status_code in (200, 400, 413, 422), (r.status_code, r.text)
    if r.status_code == 200:
        body = r.json()
        assert "results" in body or "probabilities" in body
    else:
        check_error(r, r.status_code)


@pytest.fixture(scope="module")
def rss_watch():
    with memory_bound(300, "the REST fuzz examples"):
        yield


@settings(max_examples=FUZZ or 150, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=json_body, batch=hs.booleans())
def test_fuzz_json_bodies(client, rss_watch, body, batch):
    raw = body if isinstance(body, str) else json.dumps(body)
    check_answer(client.post("/predict/batch" if batch else "/predict", content=raw.encode(),
                             headers={"content-type": "application/json"}))


@settings(max_examples=FUZZ or 100, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=raw_body, batch=hs.booleans())
def test_fuzz_raw_bodies(client, rss_watch, body, batch):
    ctype, raw = body
    check_answer(client.post("/predict/batch" if batch else "/predict", content=raw,
                             headers={"content-type": ctype} if ctype else {}))
