"""tools/predict.py: raw media → exported model, same preprocessing as dataset building."""
import json
import os
import runpy
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from emotion_mx import artifacts as A
from emotion_mx.build import extract_item
from emotion_mx.data import assemble_inputs
from emotion_mx.errors import BadItem, EmotionMXError
from emotion_mx.features.text import load_vocab
from emotion_mx.inference.predict import Predictor, media_item
from emotion_mx.inference.testing import make_exported, tone_wave, write_face_clip, write_wav

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "tools", "predict.py")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    make_exported(str(d / "export"), str(d))
    return str(d / "export")


@pytest.fixture(scope="module")
def av_model(tmp_path_factory):
    """A model without text input."""
    d = tmp_path_factory.mktemp("avmodel")
    make_exported(str(d / "export"), str(d), modalities=("audio", "video"))
    return str(d / "export")


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    from emotion_mx.features.tts import synthesize
    d = tmp_path_factory.mktemp("media")
    wave, sr, _ = synthesize("I really hate this meeting", voice="en")
    out = {"speech": write_wav(str(d / "speech.wav"), wave, sr),
           "tone": write_wav(str(d / "tone.wav"), tone_wave(1.5)),
           "face": write_face_clip(str(d / "face.avi"), 1.5),
           "text": "I really hate this meeting",
           "dir": str(d)}
    import cv2
    from emotion_mx.inference.testing import face_image
    out["image"] = str(d / "face.png")
    cv2.imwrite(out["image"], face_image(0.3))
    with open(d / "corrupt.wav", "wb") as f:
        f.write(b"RIFF\x10\x00\x00\x00WAVEfmt garbage" * 3)
    out["corrupt"] = str(d / "corrupt.wav")
    return out


def _predict(model, **kw):
    item, root = media_item(**kw)
    return Predictor(model).predict_items([item], root=root)[0]


def test_all_modalities(model, media):
    p = _predict(model, audio=media["speech"], video=media["face"], text=media["text"])
    assert p.probabilities.shape == (4,)
    assert abs(p.probabilities.sum() - 1) < 1e-5 and (p.probabilities >= 0).all()
    assert p.label == p.labels[int(np.argmax(p.probabilities))]
    assert p.modalities == ("audio", "text", "video")


def test_prosody_is_computed_only_for_models_that_read_it(model, media):
    """A store that kept prosody, a model that reads log-mel only: F0 tracking is skipped on the
    predict path, and the probabilities are those of the full feature set."""
    from emotion_mx.config import replace
    from emotion_mx.inference.model import needed_features
    pred = Predictor(model)
    assert pred.model.settings.audio_feature == "logmel"
    full = replace(pred.model.config, audio=replace(pred.model.config.audio, prosody=True, whisper=True))
    assert needed_features(full, pred.model.settings).audio.prosody is False
    assert needed_features(full, pred.model.settings).audio.whisper is False
    pred.model.config = full
    pred.model.feature_config = needed_features(full, pred.model.settings)
    item, root = media_item(audio=media["speech"])
    assert {"prosody", "whisper_logmel"}.isdisjoint(pred.features(item, root)) and "logmel" in pred.features(item, root)
    assert {"prosody", "whisper_logmel"} <= set(extract_item(item, root, full)[0])
    got = pred.predict_items([item], root=root)[0].probabilities
    every = dict(extract_item(item, root, full)[0])                 # log-mel, MFCC and prosody
    np.testing.assert_allclose(got, pred.predict_features([every])[0], atol=1e-6)
    needs = replace(pred.model.settings, audio_feature="logmel+prosody")
    kept = needed_features(full, needs)
    assert (kept.audio.prosody, kept.audio.whisper) == (True, False)
    assert needed_features(kept, needs) is kept                      # nothing left to drop
    # the stream's windows read the same restricted config (one decision, stream.py passes it)
    from emotion_mx.inference.sync import Window
    from emotion_mx.inference.window import window_features
    wave = tone_wave(1.0)
    w = Window(0, 0.0, 1.0, False, wave, [], [], [], 1.0)
    assert "prosody" not in window_features(w, "", pred.model.feature_config, ("audio",))[0]
    assert "prosody" in window_features(w, "", full, ("audio",))[0]


def test_same_as_manual_assembly(model, media):
    """extract_item + assemble_inputs + the exported block by hand give the same numbers."""
    pred = Predictor(model)
    item, root = media_item(audio=media["speech"], video=media["face"], text=media["text"])
    got = pred.predict_items([item], root=root)[0].probabilities

    block, sc = A.load_exported(model)
    arrays, meta = extract_item(item, root, pred.config)
    assert "word_spans" not in arrays          # DTW alignment is off at prediction time
    feats = dict(arrays, tokens=meta["tokens"])
    shapes = {i["name"]: i["shape"] for i in sc["inputs"]}
    settings = {"audio_feature": sc["features"]["audio_feature"], "max_audio_frames": shapes["audio"][1],
                "max_tokens": shapes["text"][1], "num_frames": shapes["video"][1],
                "frame_channels": shapes["video"][2], "frame_size": shapes["video"][3]}
    inputs = assemble_inputs([feats], sc["modalities"], settings, sc["normalisation"],
                             load_vocab(os.path.join(model, sc["vocab"])))
    logits = block(*[mx.nd.array(x) for x in A.exported_input_arrays(sc, inputs)]).asnumpy()[0]
    ref = np.exp(logits - logits.max())
    np.testing.assert_allclose(got, ref / ref.sum(), atol=1e-6)
    assert inputs["audio_mask"].sum() > 0 and inputs["video_mask"].sum() == shapes["video"][1]


@pytest.mark.parametrize("kw,mods", [
    (dict(audio="tone"), ("audio",)),
    (dict(video="face"), ("video",)),
    (dict(image="image"), ("video",)),
    (dict(text="text"), ("text",)),
    (dict(audio="speech", text="text"), ("audio", "text")),
])
def test_subsets_of_modalities(model, media, kw, mods):
    p = _predict(model, **{k: media[v] for k, v in kw.items()})
    assert p.modalities == mods
    assert abs(p.probabilities.sum() - 1) < 1e-5


def test_missing_modality_is_masked(model, media):
    pred = Predictor(model)
    item, root = media_item(text=media["text"])
    inputs = pred.model.assemble([pred.features(item, root)])
    assert inputs["audio_mask"].sum() == 0 and inputs["video_mask"].sum() == 0
    assert not inputs["audio"].any() and not inputs["video"].any()
    assert inputs["text_mask"].sum() == len(media["text"].split())


def test_manifest_batches_equal_single(model, media, tmp_path):
    d = media["dir"]
    rows = [{"id": "a", "label": "anger", "group": "g", "audio": "speech.wav", "text": media["text"]},
            {"id": "b", "audio": "tone.wav"},
            {"id": "c", "video": "face.avi", "text": "what a wonderful day"},
            {"id": "d", "image": "face.png"},
            {"id": "e", "label": "neutral", "audio": "tone.wav", "video": "face.avi", "text": "the report"}]
    manifest = os.path.join(d, "items.jsonl")
    with open(manifest, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    out = str(tmp_path / "preds.jsonl")
    code, stdout, err = _cli(["--model", model, "--manifest", manifest, "--out", out, "--batch-size", "2"])
    assert code == 0, err
    preds = [json.loads(l) for l in open(out)]
    assert [p["id"] for p in preds] == list("abcde") and preds[0]["true_label"] == "anger"
    single = Predictor(model, batch_size=1)
    for row, p in zip(rows, preds):
        item, root = media_item(**{k: (os.path.join(d, v) if k in ("audio", "video", "image") else v)
                                   for k, v in row.items() if k in ("audio", "video", "image", "text")})
        ref = single.predict_items([item], root=root)[0]
        got = np.array([p["probabilities"][l] for l in ref.labels])
        np.testing.assert_allclose(got, ref.probabilities, atol=2e-6)
        assert p["label"] == ref.label and p["modalities"] == list(ref.modalities)
    assert '"predicted": 5' in stdout


def test_int8_model(tmp_path, media):
    make_exported(str(tmp_path / "int8"), str(tmp_path), precision="int8")
    pred = Predictor(str(tmp_path / "int8"))
    assert pred.model.precision == "int8"
    item, root = media_item(audio=media["speech"], video=media["face"], text=media["text"])
    p = pred.predict_items([item], root=root)[0]
    assert np.isfinite(p.probabilities).all() and abs(p.probabilities.sum() - 1) < 1e-5


@pytest.fixture(scope="module")
def onnx_model(model, tmp_path_factory):
    """The fp32 model with model.onnx and runtime.json (what tools/export.py --onnx writes)."""
    import shutil
    from emotion_mx.deploy.onnx_export import export_onnx
    from emotion_mx.deploy.ort_runtime import measure_runtimes
    d = str(tmp_path_factory.mktemp("onnxmodel") / "export")
    shutil.copytree(model, d)
    export_onnx(d)
    measure_runtimes(d, batch_sizes=(1,), rounds=2, repeats=3)
    return d


def test_runtimes_give_the_same_predictions(onnx_model, media):
    from emotion_mx.deploy.ort_runtime import read_record
    item, root = media_item(audio=media["speech"], video=media["face"], text=media["text"])
    items = [item, item.replace(text="so happy today", id="b")]
    mxp = Predictor(onnx_model, batch_size=2, runtime="mxnet")
    ortp = Predictor(onnx_model, batch_size=2, runtime="onnxruntime")
    assert (mxp.runtime, ortp.runtime) == ("mxnet", "onnxruntime") and ortp.model.block is None
    a, b = mxp.predict_items(items, root=root), ortp.predict_items(items, root=root)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x.probabilities, y.probabilities, atol=1e-5)
        assert x.label == y.label
    record = read_record(onnx_model)
    auto = Predictor(onnx_model)
    assert auto.runtime == record["choice"]
    other = "mxnet" if record["choice"] == "onnxruntime" else "onnxruntime"
    assert auto.runtime_message == (f"runtime: {record['choice']} ({record['speedup']:.1f}x faster than {other} "
                                    "on this CPU, measured at export)")
    assert set(record["latency_ms"]["batch1"]) == {"mxnet", "onnxruntime"}


def test_runtime_choice_without_onnx(model):
    assert Predictor(model).runtime_message == "runtime: mxnet (no model.onnx in the model folder)"
    with pytest.raises(EmotionMXError, match="no model.onnx for --runtime onnxruntime"):
        Predictor(model, runtime="onnxruntime")
    with pytest.raises(EmotionMXError, match="unknown runtime 'tvm'"):
        Predictor(model, runtime="tvm")


def test_cli_runtime_option(onnx_model, media):
    code, out, err = _cli(["--model", onnx_model, "--text", media["text"], "--json", "--runtime", "onnxruntime"])
    assert code == 0, err
    assert "runtime: onnxruntime (asked)" in err and abs(sum(json.loads(out)["probabilities"].values()) - 1) < 1e-4


def test_preprocessing_must_match_model(model, tmp_path):
    import shutil
    bad = str(tmp_path / "bad")
    shutil.copytree(model, bad)
    sc = A.read_sidecar(bad)
    sc["features"]["preprocessing"]["audio"]["n_mels"] = 32
    with open(os.path.join(bad, A.SIDECAR), "w") as f:
        json.dump(sc, f)
    with pytest.raises(EmotionMXError, match="gives 32 values per frame"):
        Predictor(bad)


def test_strict_and_lenient_extra_modality(av_model, media):
    item, root = media_item(audio=media["tone"], text="hello")
    pred = Predictor(av_model)
    with pytest.raises(BadItem, match="no 'text' input"):
        pred.predict_items([item], root=root)
    p = pred.predict_items([item], root=root, strict=False)[0]
    assert p.modalities == ("audio",)


# -- CLI ---------------------------------------------------------------------------------------

def _cli(args):
    """Run tools/predict.py in-process (run_cli: one-line errors, exit codes)."""
    import contextlib
    import io
    from emotion_mx.cli import run_cli
    main = runpy.run_path(TOOL)["main"]
    out, err = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, ["predict.py"] + args
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            run_cli(main)
    except SystemExit as e:
        code = e.code
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


def test_cli_json(model, media):
    code, out, err = _cli(["--model", model, "--audio", media["speech"], "--text", media["text"], "--json"])
    assert code == 0, err
    row = json.loads(out)
    assert set(row["probabilities"]) == {"anger", "happiness", "neutral", "sadness"}
    assert abs(sum(row["probabilities"].values()) - 1) < 1e-4 and row["modalities"] == ["audio", "text"]


@pytest.mark.parametrize("args,message", [
    (["--audio", "/nonexistent/x.wav"], "audio file not found"),
    (["--audio", "corrupt"], "cannot decode audio"),
    ([], "no input given"),
    (["--video", "face", "--image", "image"], "not both"),
])
def test_cli_errors(model, media, args, message):
    args = [media.get(a, a) for a in args]
    code, out, err = _cli(["--model", model] + args)
    assert code == 2
    lines = [l for l in err.splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err


def test_cli_text_for_model_without_text_subprocess(av_model, media):
    """End to end through the real entry point: one line on stderr, exit 2, no traceback."""
    proc = subprocess.run([sys.executable, TOOL, "--model", av_model, "--audio", media["tone"], "--text", "hello"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "no 'text' input" in errors[0]
    assert "Traceback" not in proc.stderr
