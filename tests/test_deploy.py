"""Export / reload parity, sidecar contents, error handling, ONNX."""
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from emotion_mx import artifacts as A
from emotion_mx.deploy.export import export
from emotion_mx.deploy.testing import make_run, synthetic_inputs
from emotion_mx.errors import EmotionMXError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("run"))
    make_run(d, "mid_tiny")
    return d


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("export"))
    export(run_dir, out, batch_size=1)
    return out


def test_export_layout_and_sidecar(run_dir, exported):
    for f in (A.EXPORT_SYMBOL, A.EXPORT_PARAMS, A.SIDECAR, A.VOCAB):
        assert os.path.isfile(os.path.join(exported, f)), f
    sc = A.read_sidecar(exported)
    assert [i["name"] for i in sc["inputs"]] == ["audio", "audio_mask", "text", "text_mask", "video", "video_mask"]
    assert sc["inputs"][0]["shape"] == [1, 64, 16] and sc["inputs"][4]["shape"] == [1, 4, 1, 48, 48]
    assert all(i["dtype"] == "float32" for i in sc["inputs"])
    assert sc["labels"] == ["anger", "happiness", "neutral", "sadness"] and sc["precision"] == "fp32"
    assert sc["normalisation"]["logmel"]["std"][0] == 1.0 and sc["vocab"] == A.VOCAB
    assert sc["features"]["max_audio_frames"] == 64 and sc["features"]["frame_size"] == 48
    assert sc["features"]["preprocessing"]["audio"]["sample_rate"] == 16000 and sc["features"]["audio_feature"] == "logmel"
    # the symbol's data inputs are exactly the contract names (no data0/data1)
    sym, args, aux = A.load_symbol_params(exported)
    assert sorted(set(sym.list_inputs()) - set(args) - set(aux)) == sorted(i["name"] for i in sc["inputs"])
    assert args and all(k.startswith("mid_") for k in args)


@pytest.mark.parametrize("missing", [None, "text", "video"])
def test_reload_matches_trained_block(run_dir, exported, missing):
    net, spec = A.load_run_model(run_dir)
    x = synthetic_inputs(spec, batch_size=5, seed=3, missing=missing)
    names = A.input_names(spec["modalities"])
    ref = net(*[mx.nd.array(x[n]) for n in names]).asnumpy()
    block, sidecar = A.load_exported(exported)
    got = block(*[mx.nd.array(x[n]) for n in names]).asnumpy()
    assert np.abs(got - ref).max() <= 1e-5
    assert sidecar["model"]["name"] == "mid_tiny"


def test_previous_formats_are_read_once_and_older_ones_refused(run_dir, exported, tmp_path):
    """Format-1 sidecars (flat run-spec keys in "features") and run specs (data settings at the
    top level) read as the current layout; an unknown format is one clear error."""
    import json
    import shutil
    sc = A.read_sidecar(exported)
    old_dir = str(tmp_path / "v1")
    shutil.copytree(exported, old_dir)
    v1 = dict(sc, format=A.SIDECAR_FORMAT_V1,
              features={"audio_feature": "logmel", "sample_rate": 16000, "n_mels": 16, "hop_ms": 10.0,
                        "frame_size": 48, "frame_channels": 1})
    with open(os.path.join(old_dir, A.SIDECAR), "w") as f:
        json.dump(v1, f)
    up = A.read_sidecar(old_dir)
    assert up["format"] == A.SIDECAR_FORMAT and up["features"]["max_audio_frames"] == 64   # from the inputs
    assert up["features"]["preprocessing"] == {"audio": {"sample_rate": 16000, "n_mels": 16, "hop_ms": 10.0},
                                               "face": {"size": 48, "grayscale": True}}
    with open(os.path.join(old_dir, A.SIDECAR), "w") as f:
        json.dump(dict(sc, format="emotion_mx.exported/0"), f)
    with pytest.raises(EmotionMXError, match="not an exported-model sidecar"):
        A.read_sidecar(old_dir)
    spec = A.load_model_spec(run_dir)
    flat = {k: v for k, v in spec.to_dict().items() if k not in ("format", "data")}
    flat.update({k: v for k, v in spec.data.to_dict().items() if k != "modalities"})
    assert A.ModelSpec.from_dict(flat) == spec
    with pytest.raises(EmotionMXError, match="is not 'emotion_mx.run/2'"):
        A.ModelSpec.from_dict(dict(spec.to_dict(), format="emotion_mx.run/9"))


def test_unimodal_export(tmp_path):
    run = str(tmp_path / "run")
    make_run(run, "audio_cnn")
    out = export(run, str(tmp_path / "exp"))
    assert [i["name"] for i in out["inputs"]] == ["audio", "audio_mask"]
    assert out["reload_max_abs_diff"] <= 1e-5


def test_bad_artifacts_give_clear_errors(exported, tmp_path):
    with pytest.raises(EmotionMXError, match="not an exported model"):
        A.load_exported(str(tmp_path))
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in (A.EXPORT_SYMBOL, A.SIDECAR):
        (bad / f).write_bytes(open(os.path.join(exported, f), "rb").read())
    (bad / A.EXPORT_PARAMS).write_bytes(b"\x00garbage" * 10)
    with pytest.raises(EmotionMXError, match="corrupt"):
        A.load_exported(str(bad))
    with pytest.raises(EmotionMXError, match="without parameters"):
        A.save_symbol_params(str(tmp_path / "x"), mx.sym.var("audio"), {}, {})


def test_export_cli_errors_are_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "tools/export.py", "--run", str(tmp_path), "--out", str(tmp_path / "o")],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ") and "not a training run" in proc.stderr


def test_onnx_export_matches_mxnet(run_dir, tmp_path):
    out = str(tmp_path / "exp")
    full = export(run_dir, out, onnx=True)
    summary = full["onnx"]
    assert summary["checker"] == "ok" and summary["opset_imports"] == [13]
    # both runtimes timed on this CPU at export; the record names the faster one
    from emotion_mx.deploy.ort_runtime import read_record
    record = read_record(out)
    lat = record["latency_ms"]
    assert set(lat) == {"batch1", "batch32"} and record["measured_at"] == "export"
    faster = min(("mxnet", "onnxruntime"), key=lambda r: lat["batch1"][r]["median_ms"] * lat["batch32"][r]["median_ms"])
    assert record["choice"] == faster and full["runtime"].startswith(f"runtime: {faster} (")
    assert summary["max_abs_diff_vs_mxnet"] <= 1e-4
    assert os.path.isfile(os.path.join(out, A.ONNX_MODEL))


RNN_PRESETS = {"audio_crnn", "text_bilstm"}     # MXNet's fused RNN op has no mx2onnx translation


# Every preset, the ones on pretrained encoders too (their encoders alone: test_deploy_encoders.py).
@pytest.mark.parametrize("name", sorted(set(__import__("emotion_mx.models", fromlist=["PRESETS"]).PRESETS)
                                        - RNN_PRESETS))
def test_onnx_export_is_clean_and_matches_mxnet_for_every_preset(name, tmp_path):
    import onnx
    run = str(tmp_path / "run")
    make_run(run, name)
    out = str(tmp_path / "exp")
    summary = export(run, out, onnx=True, measure_runtime=False)["onnx"]
    assert summary["max_abs_diff_vs_mxnet"] <= 1e-4 and summary["ort_warnings"] == []
    model = onnx.load(os.path.join(out, A.ONNX_MODEL))
    sidecar = A.read_sidecar(out)
    inits = {t.name for t in model.graph.initializer}
    # weights are initializers only; the graph inputs are exactly the contract's input names
    assert sorted(i.name for i in model.graph.input) == sorted(i["name"] for i in sidecar["inputs"])
    assert inits and not inits & {i.name for i in model.graph.input}
    used = {n for node in model.graph.node for n in node.input}
    assert inits <= used
    assert all(i.type.tensor_type.shape.dim[0].dim_param == "batch" for i in model.graph.input)
    # (export's verification already ran ORT, all optimisations on, at batch 1 and 3 vs MXNet)


def test_onnx_runs_at_any_batch_size(run_dir, tmp_path):
    from emotion_mx.deploy.onnx_export import ort_session, random_inputs
    from emotion_mx.deploy.runtime import Runner
    out = str(tmp_path / "exp")
    export(run_dir, out, onnx=True, measure_runtime=False)
    sess, warnings = ort_session(os.path.join(out, A.ONNX_MODEL))
    assert warnings == []
    sidecar = A.read_sidecar(out)
    sym, args, aux = A.load_symbol_params(out)
    for bs in (1, 5):
        x = random_inputs(sidecar, batch_size=bs, seed=7)
        ref = Runner(sym, args, aux, {k: v.shape for k, v in x.items()}, backend="plain")(x)
        got = sess.run(None, x)[0]
        assert got.shape == ref.shape and np.abs(got - ref).max() <= 1e-4


def test_onnx_warnings_are_surfaced(tmp_path, caplog):
    """An ONNX file with a weight left in the graph inputs makes ORT warn: the warning is logged
    and returned, not silenced."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from emotion_mx.deploy.onnx_export import ort_session
    w = numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2]),
                               helper.make_tensor_value_info("w", TensorProto.FLOAT, [2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [w])
    path = str(tmp_path / "m.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    with caplog.at_level("WARNING"):
        _, warnings = ort_session(path)
    assert warnings and "w" in warnings[0]
    assert any("onnxruntime:" in r.message for r in caplog.records)


def test_onnx_refuses_rnn_models_clearly(tmp_path):
    run = str(tmp_path / "run")
    make_run(run, "audio_crnn")
    with pytest.raises(EmotionMXError, match="cannot be exported to ONNX: it uses RNN"):
        export(run, str(tmp_path / "exp"), onnx=True)


def test_first_error_line_names_the_mxnet_error_not_its_traceback(tmp_path):
    from emotion_mx.artifacts import first_error_line
    junk = tmp_path / "junk.params"
    junk.write_bytes(b"not an ndarray file")
    with pytest.raises(mx.base.MXNetError) as info:
        mx.nd.load(str(junk))
    line = first_error_line(info.value)
    assert "Invalid NDArray file format" in line and "Traceback" not in line
