"""The Python API (emotion_mx.api): one import, one call, files or in-memory data."""
import glob
import os
import subprocess
import sys

import numpy as np
import pytest

from emotion_mx.inference.testing import face_image, tone_wave, write_face_clip, write_wav

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def models(exported_models):
    return exported_models


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    import cv2
    d = tmp_path_factory.mktemp("api_media")
    wave = tone_wave(1.2)
    out = {"wave": wave, "wav": write_wav(str(d / "a.wav"), wave),
           "wav22k": str(d / "a22k.wav"), "clip": write_face_clip(str(d / "face.avi"), 1.0),
           "png": str(d / "face.png"), "rgb": cv2.cvtColor(face_image(0.3), cv2.COLOR_BGR2RGB)}
    import librosa
    out["wave22k"] = librosa.resample(wave, orig_sr=16000, target_sr=22050).astype(np.float32)
    write_wav(out["wav22k"], out["wave22k"], 22050)
    cv2.imwrite(out["png"], face_image(0.3))
    return out


def test_import_is_lazy():
    code = ("import sys, emotion_mx; assert 'mxnet' not in sys.modules; "
            "from emotion_mx import EmotionRecognizer; assert 'mxnet' not in sys.modules; "
            "print(EmotionRecognizer.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "emotion_mx.api"


def test_one_call_all_modalities(models, media):
    from emotion_mx import EmotionRecognizer
    rec = EmotionRecognizer.load(models["fp32"])
    r = rec.predict(audio=media["wav"], text="I am so angry", image=media["png"])
    assert r.modalities == ("audio", "text", "video")
    assert list(r.probabilities) == rec.labels
    assert abs(sum(r.probabilities.values()) - 1) < 1e-5
    assert r.label == max(r.probabilities, key=r.probabilities.get)
    assert {"audio", "text", "video", "model", "total"} <= set(r.timings)
    assert all(v >= 0 for v in r.timings.values())
    j = r.to_json()
    assert j["label"] == r.label and j["modalities"] == ["audio", "text", "video"]


def test_same_numbers_as_predictor(models, media):
    """The API's file path is tools/predict.py's code path (Predictor on an Utterance)."""
    from emotion_mx import EmotionRecognizer
    from emotion_mx.inference.predict import Predictor, media_item
    item, root = media_item(audio=media["wav"], video=media["clip"], text="I really hate this")
    want = Predictor(models["fp32"]).predict_items([item], root=root)[0].probabilities
    got = EmotionRecognizer.load(models["fp32"]).predict(audio=media["wav"], video=media["clip"],
                                                         text="I really hate this")
    np.testing.assert_allclose([got.probabilities[l] for l in sorted(got.probabilities, key=list(got.probabilities).index)],
                               want, atol=1e-6)


def test_arrays_equal_files(models, media):
    from emotion_mx import EmotionRecognizer
    rec = EmotionRecognizer.load(models["fp32"])
    import soundfile as sf
    a = rec.predict(audio=media["wav"]).probabilities
    b = rec.predict(audio=(sf.read(media["wav"], dtype="float32")[0], 16000)).probabilities
    assert a == pytest.approx(b, abs=1e-6)
    # another rate is resampled the same way whether it comes from a file or an array
    c = rec.predict(audio=media["wav22k"]).probabilities
    d = rec.predict(audio=sf.read(media["wav22k"], dtype="float32")).probabilities
    assert c == pytest.approx(d, abs=1e-6)
    # int16 PCM and stereo arrays
    pcm = (np.clip(media["wave"], -1, 1) * 32767).astype(np.int16)
    e = rec.predict(audio=(np.stack([pcm, pcm], axis=1), 16000)).probabilities
    assert e == pytest.approx(a, abs=1e-3)
    f = rec.predict(image=media["png"]).probabilities
    g = rec.predict(image=media["rgb"]).probabilities
    assert f == pytest.approx(g, abs=1e-6)
    h = rec.predict(image=media["rgb"].astype(np.float32) / 255.0).probabilities
    assert h == pytest.approx(g, abs=1e-3)


def test_batch_equals_single(models, media):
    from emotion_mx import EmotionRecognizer
    rec = EmotionRecognizer.load(models["fp32"], batch_size=4)
    inputs = [{"audio": media["wav"]}, {"text": "hello world"}, {"image": media["rgb"], "text": "great"},
              {"video": media["clip"], "audio": (media["wave"], 16000)}, {"text": "lonely and sorry"}]
    batch = rec.predict_batch(inputs)
    assert [r.modalities for r in batch] == [("audio",), ("text",), ("text", "video"), ("audio", "video"), ("text",)]
    for kw, r in zip(inputs, batch):
        single = rec.predict(**kw)
        assert single.label == r.label
        assert single.probabilities == pytest.approx(r.probabilities, abs=1e-5)


def test_int8_and_audio_only_models(models, media):
    from emotion_mx import EmotionRecognizer
    q = EmotionRecognizer.load(models["int8"])
    assert q.precision == "int8"
    r = q.predict(audio=media["wav"], text="so happy", image=media["png"])
    assert r.modalities == ("audio", "text", "video") and abs(sum(r.probabilities.values()) - 1) < 1e-5
    a = EmotionRecognizer.load(models["audio"])
    assert a.input_arguments == ("audio",)
    with pytest.raises(ValueError, match=r"^text: the model has no text input \(it takes audio\)"):
        a.predict(audio=media["wav"], text="hi")
    assert a.predict(audio=media["wav"], text="hi", strict=False).modalities == ("audio",)


def test_errors_name_the_argument(models, media, tmp_path):
    from emotion_mx import EmotionRecognizer, InputError
    from emotion_mx.errors import EmotionMXError
    rec = EmotionRecognizer.load(models["fp32"])
    corrupt = tmp_path / "bad.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage" * 3)
    cases = [
        ({}, r"^inputs: no input given: pass at least one of audio, text, image, video"),
        ({"audio": str(tmp_path / "none.wav")}, r"^audio: file not found: "),
        ({"audio": str(corrupt)}, r"^audio: cannot decode audio "),
        ({"audio": (np.zeros(8000, np.float32), 16000)}, r"^audio: audio is silent"),
        ({"audio": (media["wave"], 16000.5)}, r"^audio: sample rate must be an integer"),
        ({"audio": media["wave"]}, r"^audio: expected a file path or \(waveform, sample_rate\)"),
        ({"text": "   "}, r"^text: no words in the text"),
        ({"text": 3}, r"^text: expected a string, got int"),
        ({"image": np.zeros((4, 4, 5), np.uint8)}, r"^image: expected an \(H, W\) or \(H, W, 3\) RGB array"),
        ({"image": media["png"], "video": media["clip"]}, r"^image: give image or video, not both"),
    ]
    for kw, pattern in cases:
        with pytest.raises(InputError, match=pattern) as e:
            rec.predict(**kw)
        assert isinstance(e.value, ValueError) and isinstance(e.value, EmotionMXError)
        assert "--" not in str(e.value)             # no CLI flags in the API's errors
    with pytest.raises(InputError, match=r"^inputs\[1\]\.text: no words"):
        rec.predict_batch([{"text": "ok"}, {"text": ""}])
    with pytest.raises(InputError, match=r"^inputs\[0\]\.sound: unknown argument"):
        rec.predict_batch([{"sound": media["wav"]}])
    with pytest.raises(EmotionMXError, match="model folder not found"):
        EmotionRecognizer.load(str(tmp_path / "missing"))


def test_real_clips(models, real_data):
    """An EmoDB wav, a CK+ face and a sentence through the API (fp32 and INT8)."""
    from emotion_mx import EmotionRecognizer
    wav = sorted(glob.glob(os.path.join(real_data, "emodb", "wav", "*.wav")))
    png = sorted(glob.glob(os.path.join(real_data, "ckplus48", "*", "*.png")))
    if not wav or not png:
        pytest.skip("no emodb/wav or ckplus48 under EMOTION_MX_DATA")
    for name in ("fp32", "int8"):
        rec = EmotionRecognizer.load(models[name])
        r = rec.predict(audio=wav[0], text="I am so angry", image=png[0])
        assert r.modalities == ("audio", "text", "video")
        assert abs(sum(r.probabilities.values()) - 1) < 1e-5


def test_guide_python_api_example_runs(models, tmp_path, capsys):
    """The user guide's "Python API" block (docs/guide.md), run as written against a work/demo-like
    tree: a test export and demo-corpus items (only the anger class, one per speaker)."""
    import re
    from emotion_mx.demo import make_demo_corpus
    os.makedirs(tmp_path / "work" / "demo")
    os.symlink(models["fp32"], tmp_path / "work" / "demo" / "export")
    make_demo_corpus(str(tmp_path / "work" / "demo" / "corpus"), per_class_per_speaker=1, classes=("anger",))
    with open(os.path.join(ROOT, "docs", "guide.md"), encoding="utf-8") as f:
        readme = f.read()
    section = readme[readme.index("## Python API"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(code, "README.md", "exec"), {})
    finally:
        os.chdir(cwd)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4
    assert "('audio', 'text', 'video')" in lines[0]
    assert lines[2] in ("anger", "happiness", "neutral", "sadness")
    assert lines[3].startswith("[")
    # the demo's closing step (emotion_mx.demo.predict_with_api) on the same tree
    from emotion_mx.demo import predict_with_api
    item, r = predict_with_api(str(tmp_path / "work" / "demo" / "export"), str(tmp_path / "work" / "demo" / "corpus"))
    assert item.id == "spk06_anger_00" and item.label == "anger"
    assert r.modalities == ("audio", "text", "video")
