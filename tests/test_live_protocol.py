"""The live page's WebSocket protocol and uploads at the edge (emotion_mx.live.protocol): every
bad message gets one JSON error naming its field, client timestamps cannot make the server
allocate, uploads are decoded before they are accepted, the API key and the Origin check.
Property-based part: random message sequences (Hypothesis; EMOTION_MX_FUZZ_EXAMPLES raises
the number of examples for a manual fuzz run)."""
import json
import logging
import os
import re
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as hs

from emotion_mx.inference.testing import face_image, tone_wave, write_av_clip, write_wav
from emotion_mx.serve.testing import memory_bound, resident_mb

SETTINGS = dict(window=1.0, hop=0.5, tolerance=0.1, latency_budget=5.0)
KEY = "live-test-key-0123"
FUZZ = int(os.environ.get("EMOTION_MX_FUZZ_EXAMPLES", "0"))
# an exception's type name or a traceback in a message meant for a client
RAW_EXCEPTION = re.compile(r"Traceback|\b[A-Z][A-Za-z]*(Error|Exception)\b|File \"")


@pytest.fixture(scope="module")
def model(tiny_export):
    return tiny_export


@pytest.fixture(scope="module")
def client(model):
    from fastapi.testclient import TestClient
    from emotion_mx.live import create_app
    return TestClient(create_app(model, **SETTINGS))


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    import cv2
    d = tmp_path_factory.mktemp("live_media")
    clip, _ = write_av_clip(str(d / "clip.avi"), 2.0, fps=10)
    png = str(d / "face.png")
    cv2.imwrite(png, face_image(0.3))
    ok, jpeg = cv2.imencode(".jpg", face_image(0.3))
    return {"clip": clip, "wav": write_wav(str(d / "a.wav"), tone_wave(1.5)), "png": png, "jpeg": jpeg.tobytes()}


def audio(t, samples):
    return struct.pack("<cd", b"a", t) + np.asarray(samples, "<f4").tobytes()


def frame(t, jpeg):
    return struct.pack("<cd", b"v", t) + jpeg


def tone(seconds, sr=16000):
    return (0.3 * np.sin(np.arange(int(seconds * sr)) * 2 * np.pi * 220 / sr)).astype(np.float32)


def until_close(ws):
    """Every JSON message up to the server's close, and the close code."""
    out = []
    while True:
        msg = ws.receive()
        if msg["type"] == "websocket.close":
            return out, msg.get("code")
        out.append(json.loads(msg["text"]))


def check_error(msg):
    """An error as the protocol promises it: a type, a field, a message without raw exceptions."""
    assert set(msg) == {"type", "field", "error"}, msg
    assert msg["type"] == "error" and isinstance(msg["field"], str) and msg["field"]
    assert isinstance(msg["error"], str) and msg["error"] and "\n" not in msg["error"]
    assert not RAW_EXCEPTION.search(msg["error"]), msg
    assert not re.search(r"(?<![\w.])/(tmp|home|work|root|usr)/", msg["error"]), msg


def no_errors_logged(caplog):
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not bad, [r.getMessage() for r in bad]


# -- the cases of issue 24 -----------------------------------------------------------------

@pytest.mark.parametrize("t", [3000.0, 1e12])
def test_future_timestamp_is_refused_not_zero_filled(client, t, caplog):
    """One 16 KB message stamped t = 3000 s used to zero-fill 3000 s of audio (+390 MB
    resident); t = 1e12 asked for petabytes.  Now: one error naming t, nothing buffered."""
    before = resident_mb()
    with client.websocket_connect("/live/ws") as ws:
        ws.send_text(json.dumps({"type": "start", "audio": True, "video": False}))
        ws.send_bytes(audio(0.0, tone(0.5)))
        ws.send_bytes(audio(t, tone(0.256)))                 # 16 KB of samples
        err = json.loads(ws.receive_text())
        check_error(err)
        assert err["field"] == "t" and "ahead of the stream" in err["error"]
        ws.send_text(json.dumps({"type": "stop"}))
        msgs, code = until_close(ws)
    summary = msgs[-1]
    assert summary["type"] == "summary" and code == 1000
    assert summary["received"]["audio_chunks"] == 1 and summary["audio_gap_seconds"] == 0
    assert summary["stream_seconds"] == pytest.approx(0.5)
    assert resident_mb() - before < 100
    no_errors_logged(caplog)


@pytest.mark.parametrize("first", ["3", "[1, 2]", "\"start\"", "null", "{not json", "{\"audio\": true}",
                                   "{\"type\": \"stop\"}", b"a\x00\x00\x00\x00\x00\x00\x00\x00xxxx"])
def test_first_message_that_is_not_a_start_object(client, first, caplog):
    """A number, a list, a string... as the first message gave a server traceback and raw
    exception text ("TypeError: argument of type 'int' is not iterable")."""
    with client.websocket_connect("/live/ws") as ws:
        ws.send_bytes(first) if isinstance(first, bytes) else ws.send_text(first)
        msgs, code = until_close(ws)
    assert len(msgs) == 1 and code == 1008, msgs
    check_error(msgs[0])
    assert msgs[0]["field"] in ("message", "type")
    no_errors_logged(caplog)


BAD_AFTER_START = [
    ("{not json", "message"),
    ("[1, 2]", "message"),
    ("42", "message"),
    ("{\"type\": 7}", "type"),
    ("{\"type\": \"bogus\"}", "type"),
    ("{\"type\": \"start\", \"audio\": true}", "type"),
    ("{\"type\": \"stop\", \"now\": true}", "now"),
    ("{\"type\": \"text\", \"text\": 5}", "text"),
    (b"abc", "payload"),
    (struct.pack("<cd", b"x", 0.0) + b"1234", "kind"),
    (struct.pack("<cd", b"v", 0.0) + b"\xff\xd8\xff" + b"0" * 100, "kind"),    # started without video
    (struct.pack("<cd", b"a", float("nan")) + b"\0" * 8, "t"),
    (struct.pack("<cd", b"a", -1.0) + b"\0" * 8, "t"),
    (struct.pack("<cd", b"a", 0.0) + b"\0" * 7, "payload"),
    (audio(0.0, [0.1, float("nan")]), "payload"),
    (audio(0.0, [0.1, 40.0]), "payload"),
    (audio(0.0, np.zeros(16000 * 3)), "payload"),                             # 3 s in one message
]


def test_bad_messages_after_start_get_one_error_each(client, caplog):
    with client.websocket_connect("/live/ws") as ws:
        ws.send_text(json.dumps({"type": "start", "audio": True, "video": False}))
        for message, field in BAD_AFTER_START:
            ws.send_bytes(message) if isinstance(message, bytes) else ws.send_text(message)
            err = json.loads(ws.receive_text())
            check_error(err)
            assert err["field"] == field, (message, err)
        ws.send_text(json.dumps({"type": "stop"}))
        msgs, code = until_close(ws)
    assert [m["type"] for m in msgs] == ["summary"] and code == 1000
    assert msgs[0]["received"] == {"frames": 0, "audio_chunks": 0}
    no_errors_logged(caplog)


def test_bad_start_fields(client):
    cases = [({"type": "start", "audio": 1}, "audio"), ({"type": "start", "audio": False}, "audio"),
             ({"type": "start", "audio": True, "bogus": 1}, "bogus"), ({"type": "start", "file": 3}, "file"),
             ({"type": "start", "file": "0" * 32}, "file"), ({"type": "start", "file": "../../etc/passwd"}, "file"),
             ({"type": "start", "audio": True, "text": ["x"]}, "text"),
             ({"type": "start", "audio": True, "text": "x" * 10000}, "text"),
             ({"type": "start", "audio": True, "catch_up": "no"}, "catch_up")]
    for start, field in cases:
        with client.websocket_connect("/live/ws") as ws:
            ws.send_text(json.dumps(start))
            msgs, code = until_close(ws)
        assert len(msgs) == 1 and code == 1008, (start, msgs)
        check_error(msgs[0])
        assert msgs[0]["field"] == field, (start, msgs[0])


def test_transcript_needs_a_text_model():
    from emotion_mx.live.protocol import Limits, ProtocolError, parse_start
    with pytest.raises(ProtocolError) as e:
        parse_start(json.dumps({"type": "start", "audio": True, "text": "so angry"}), Limits(), ("audio",))
    assert e.value.field == "text" and e.value.message == "the model has no text input (it takes audio)"
    assert parse_start(json.dumps({"type": "start", "audio": True, "text": "so angry"}), Limits(),
                       ("audio", "text"))["text"] == "so angry"


def test_rate_and_error_limits(model):
    """A client over the message rate gets an error naming 'rate'; after max_errors refused
    messages the connection is closed (1008).  The rate is near zero here: no timing."""
    from fastapi.testclient import TestClient
    from emotion_mx.live import create_app
    from emotion_mx.live.protocol import Limits
    app = create_app(model, limits=Limits(max_messages_per_s=1e-6, burst=3, max_errors=3), **SETTINGS)
    with TestClient(app).websocket_connect("/live/ws") as ws:
        ws.send_text(json.dumps({"type": "start", "audio": True, "video": False}))
        for k in range(3):                                    # the burst: accepted
            ws.send_bytes(audio(k * 0.25, tone(0.25)))
        for _ in range(3):
            ws.send_bytes(audio(0.75, tone(0.25)))
        msgs, code = until_close(ws)
    errors = [m for m in msgs if m["type"] == "error"]
    assert [e["field"] for e in errors] == ["rate"] * 3 and code == 1008
    for e in errors:
        check_error(e)


def test_frame_limits(model, media):
    """Frames: at most max_fps per second of stream time, a size read from the header before
    decoding, JPEG/PNG only; a header that lies is refused when the frame does not decode."""
    import cv2
    from fastapi.testclient import TestClient
    from emotion_mx.live import create_app
    from emotion_mx.live.protocol import Limits
    big = cv2.imencode(".png", np.zeros((1000, 1000, 3), np.uint8))[1].tobytes()       # 1 MP, a few KB
    broken = media["jpeg"][:200] + b"\0" * 300
    app = create_app(model, limits=Limits(max_fps=2), **SETTINGS)
    with TestClient(app).websocket_connect("/live/ws") as ws:
        ws.send_text(json.dumps({"type": "start", "audio": False, "video": True}))
        for message in (frame(0.1, media["jpeg"]), frame(0.3, media["jpeg"]), frame(0.5, media["jpeg"]),
                        frame(1.1, big), frame(1.2, b"GIF89a" + b"\0" * 50), frame(1.3, broken)):
            ws.send_bytes(message)
        ws.send_text(json.dumps({"type": "stop"}))
        msgs, code = until_close(ws)
    errors = [m for m in msgs if m["type"] == "error"]
    for e in errors:
        check_error(e)
    assert [e["field"] for e in errors] == ["t", "payload", "payload", "payload"], errors
    assert errors[0]["error"] == "more than 2 frames within one second of stream time"
    assert "1000x1000" in errors[1]["error"] and "JPEG or PNG" in errors[2]["error"]
    assert "does not decode" in errors[3]["error"]
    assert msgs[-1]["type"] == "summary" and msgs[-1]["received"]["frames"] == 2 and code == 1000


def test_memory_stays_bounded_over_a_long_stream(client, caplog):
    """Ten minutes of stream time pushed as fast as possible, in steps of max_ahead: the
    buffer keeps one window, so resident memory barely moves."""
    before = resident_mb()
    chunk = tone(1.0)
    with client.websocket_connect("/live/ws") as ws:
        ws.send_text(json.dumps({"type": "start", "audio": True, "video": False}))
        for k in range(200):                     # 1 s of audio every 3 s: gaps of 2 s each
            ws.send_bytes(audio(3.0 * k, chunk))
        ws.send_text(json.dumps({"type": "stop"}))
        msgs, code = until_close(ws)
    summary = msgs[-1]
    assert summary["type"] == "summary" and summary["received"]["audio_chunks"] == 200
    assert summary["stream_seconds"] == pytest.approx(598.0)
    assert resident_mb() - before < 100
    no_errors_logged(caplog)


def test_streams_opened_in_a_loop_do_not_grow_the_server(client):
    """Each stream used to leave about 5 MB behind (MXNet's per-thread state of the stream's
    worker thread, found by the fuzz run's memory check): 80 streams grew it by ~390 MB."""
    def one():
        with client.websocket_connect("/live/ws") as ws:
            ws.send_text(json.dumps({"type": "start", "audio": True}))
            ws.send_bytes(audio(0.0, tone(0.5)))
            ws.send_text(json.dumps({"type": "stop"}))
            assert until_close(ws)[0][-1]["type"] == "summary"
    one()
    with memory_bound(50, "80 streams"):
        for _ in range(80):
            one()


def test_transcript_reaches_the_model(client, media):
    with client.websocket_connect("/live/ws") as ws:
        ws.send_text(json.dumps({"type": "start", "audio": True, "video": False, "text": "I am so angry",
                                 "catch_up": False}))
        ws.send_bytes(audio(0.0, tone(1.0)))
        ws.send_text(json.dumps({"type": "text", "text": ""}))     # the transcript ends at 1 s
        ws.send_bytes(audio(1.0, tone(1.0)))
        ws.send_text(json.dumps({"type": "stop"}))
        msgs, code = until_close(ws)
    rows = [m for m in msgs if m["type"] == "window"]
    assert rows and msgs[-1]["type"] == "summary"
    assert rows[0]["modalities"] == ["audio", "text"]
    assert rows[-1]["start"] >= 1.0 and rows[-1]["modalities"] == ["audio"]


# -- uploads ---------------------------------------------------------------------------------

def test_garbage_upload_is_refused_before_streaming(client, media):
    """A garbage file used to be accepted and stream to an empty summary with no error."""
    st = client.app.state.live
    cases = [(("x.wav", b"RIFF\x10\x00\x00\x00WAVEfmt garbage" * 20), "cannot decode it as audio or video"),
             (("x.mp4", os.urandom(5000)), "cannot decode it as audio or video"),
             (("notes.txt", b"hello there"), "unsupported media type '.txt'"),
             (("noext", b"\x00" * 100), "unknown media type")]
    for upload, detail in cases:
        r = client.post("/live/upload", files={"file": upload})
        assert r.status_code == 422, (upload[0], r.text)
        body = r.json()
        assert body["error"] == "invalid_input" and body["argument"] == "file"
        assert body["detail"].startswith("file: ") and detail in body["detail"], body
        assert st.uploads not in body["detail"]
    assert os.listdir(st.uploads) == []
    r = client.post("/live/upload", data={"x": "1"})                  # no file part: the framework's 422
    assert r.status_code == 422 and r.json() == {"error": "invalid_input", "argument": "file",
                                                 "detail": "file: Field required"}


def test_upload_limits_and_cleanup(model, media):
    from fastapi.testclient import TestClient
    from emotion_mx.live import create_app
    from emotion_mx.live.server import MAX_PENDING_UPLOADS
    client = TestClient(create_app(model, max_upload_mb=0.05, **SETTINGS))
    st = client.app.state.live
    r = client.post("/live/upload", files={"file": ("big.wav", b"RIFF" + b"\0" * 200_000)})
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"
    with open(media["wav"], "rb") as f:
        data = f.read()
    ids = [client.post("/live/upload", files={"file": ("a.wav", data)}).json()["id"]
           for _ in range(MAX_PENDING_UPLOADS + 2)]
    assert len(os.listdir(st.uploads)) == MAX_PENDING_UPLOADS      # the two oldest were removed
    with client.websocket_connect("/live/ws") as ws:                 # an evicted id is unknown
        ws.send_text(json.dumps({"type": "start", "file": ids[0]}))
        msgs, code = until_close(ws)
    assert msgs[0]["field"] == "file" and code == 1008
    with client.websocket_connect("/live/ws") as ws:
        ws.send_text(json.dumps({"type": "start", "file": ids[-1], "realtime": False}))
        msgs, code = until_close(ws)
    assert msgs[-1]["type"] == "summary" and msgs[-1]["windows"] >= 1
    assert len(os.listdir(st.uploads)) == MAX_PENDING_UPLOADS - 1   # streamed, then removed
    uploads = st.uploads
    st.close()
    assert not os.path.exists(uploads)


# -- authentication ----------------------------------------------------------------------------

def test_api_key_for_info_upload_and_websocket(model, media):
    from fastapi.testclient import TestClient
    from starlette.websockets import WebSocketDisconnect
    from emotion_mx.live import create_app
    client = TestClient(create_app(model, api_key=KEY, **SETTINGS))
    assert client.get("/live/").status_code == 200 and client.get("/live/static/live.js").status_code == 200
    r = client.get("/live/info")
    assert r.status_code == 401 and r.json()["error"] == "unauthorized" and r.headers["www-authenticate"] == "Bearer"
    assert client.get("/live/info", headers={"Authorization": "Bearer wrong-key-000"}).status_code == 401
    info = client.get("/live/info", headers={"X-API-Key": KEY}).json()
    assert info["auth"] is True
    with open(media["wav"], "rb") as f:
        data = f.read()
    assert client.post("/live/upload", files={"file": ("a.wav", data)}).status_code == 401
    assert client.post("/live/upload", files={"file": ("a.wav", data)},
                       headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    for start in ({"type": "start", "audio": True}, {"type": "start", "audio": True, "key": "wrong-key"}):
        with client.websocket_connect("/live/ws") as ws:
            ws.send_text(json.dumps(start))
            msgs, code = until_close(ws)
        assert len(msgs) == 1 and msgs[0]["field"] == "key" and code == 1008
    for headers, start in (({}, {"type": "start", "audio": True, "key": KEY}),
                           ({"X-API-Key": KEY}, {"type": "start", "audio": True})):
        with client.websocket_connect("/live/ws", headers=headers) as ws:
            ws.send_text(json.dumps(start))
            ws.send_text(json.dumps({"type": "stop"}))
            msgs, code = until_close(ws)
        assert msgs[-1]["type"] == "summary" and code == 1000
    # a page of another site cannot open the socket through the user's browser
    with pytest.raises(WebSocketDisconnect):
        with client.websocket_connect("/live/ws", headers={"Origin": "https://evil.example"}) as ws:
            ws.send_text(json.dumps({"type": "start", "audio": True, "key": KEY}))
            ws.receive_text()
    with client.websocket_connect("/live/ws", headers={"Origin": "http://testserver", "X-API-Key": KEY}) as ws:
        ws.send_text(json.dumps({"type": "start", "audio": True}))
        ws.send_text(json.dumps({"type": "stop"}))
        assert until_close(ws)[0][-1]["type"] == "summary"


def test_bind_check():
    from emotion_mx.errors import EmotionMXError
    from emotion_mx.serve.security import check_bind
    assert check_bind("127.0.0.1") is None and check_bind("::1") is None and check_bind("localhost") is None
    assert check_bind("0.0.0.0", KEY) == KEY and check_bind("0.0.0.0", no_auth=True) is None
    with pytest.raises(EmotionMXError, match="refusing to listen on 0.0.0.0 without authentication"):
        check_bind("0.0.0.0")
    with pytest.raises(EmotionMXError, match="at least 8"):
        check_bind("127.0.0.1", "short")


# -- property-based -----------------------------------------------------------------------------

json_scalar = hs.one_of(hs.none(), hs.booleans(), hs.integers(-2 ** 70, 2 ** 70),
                        hs.floats(allow_nan=True, allow_infinity=True), hs.text(max_size=12))
json_value = hs.recursive(json_scalar, lambda c: hs.one_of(hs.lists(c, max_size=3),
                                                           hs.dictionaries(hs.text(max_size=8), c, max_size=3)),
                          max_leaves=8)
control = hs.one_of(
    hs.fixed_dictionaries({"type": hs.sampled_from(["stop", "text", "start", "bogus"])},
                          optional={"text": json_value, "audio": json_value, "x": json_value}).map(json.dumps),
    json_value.map(json.dumps), hs.text(max_size=40))
timestamps = hs.one_of(hs.floats(allow_nan=True, allow_infinity=True), hs.floats(0, 10), hs.just(3000.0),
                       hs.just(1e12))
binary = hs.one_of(
    hs.binary(max_size=40),
    hs.tuples(hs.sampled_from([b"a", b"v", b"x"]), timestamps,
              hs.one_of(hs.binary(max_size=64),
                        hs.lists(hs.floats(-2, 2, width=32), max_size=400).map(lambda s: np.asarray(s, "<f4").tobytes()),
                        hs.just(b"\xff\xd8\xff\xe0" + b"\0" * 40))).map(lambda x: struct.pack("<cd", x[0], x[1]) + x[2]))
start = hs.one_of(
    hs.fixed_dictionaries({"type": hs.just("start"), "audio": hs.booleans(), "video": hs.booleans()},
                          optional={"catch_up": hs.booleans(), "text": hs.text(max_size=30)}).map(json.dumps),
    control, binary)


@pytest.fixture(scope="module")
def rss_watch(client):
    with client.websocket_connect("/live/ws") as ws:         # the model's first use is not growth
        ws.send_text(json.dumps({"type": "start", "audio": True}))
        ws.send_bytes(audio(0.0, tone(1.0)))
        ws.send_text(json.dumps({"type": "stop"}))
        until_close(ws)
    with memory_bound(300, "the WebSocket fuzz examples"):
        yield


@settings(max_examples=FUZZ or 60, deadline=None, suppress_health_check=list(HealthCheck))
@given(first=start, messages=hs.lists(hs.one_of(control, binary), max_size=8))
def test_fuzz_websocket_protocol(client, rss_watch, first, messages):
    """Random start and message sequences: only windows, a summary and well-formed errors come
    back, at most one error per message; no traceback in the log (checked by the fixture below)."""
    with client.websocket_connect("/live/ws") as ws:
        for m in [first] + messages:
            ws.send_bytes(m) if isinstance(m, bytes) else ws.send_text(m)
        ws.send_text(json.dumps({"type": "stop"}))
        msgs, code = until_close(ws)
    errors = [m for m in msgs if m["type"] == "error"]
    assert len(errors) <= len(messages) + 1
    for e in errors:
        check_error(e)
    assert all(m["type"] in ("window", "summary", "error") for m in msgs)
    assert code in (1000, 1008)
    if code == 1000:
        assert msgs[-1]["type"] == "summary"


@pytest.fixture(autouse=True)
def _no_server_tracebacks(caplog):
    """No test here may leave an ERROR record (a logged traceback) from the live server."""
    yield
    no_errors_logged(caplog)
