"""C++ wrapper (cpp_deploy/): build once, parity with Python for fp32 and INT8, error lines."""
import os
import shutil
import subprocess
import time

import numpy as np
import pytest

from emotion_mx import artifacts as A
from emotion_mx.deploy import cpp
from emotion_mx.deploy.export import export
from emotion_mx.deploy.quantize import quantize_symbol
from emotion_mx.deploy.runtime import Runner
from emotion_mx.deploy.testing import make_run, synthetic_inputs
from emotion_mx.errors import EmotionMXError

pytestmark = pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
FP32_TOL = 1e-5
# INT8: C++ and Python run the same graph executor with the same oneDNN kernels; measured
# bit-identical on this machine (AVX-512 VNNI).  The tolerance allows for oneDNN picking a
# different kernel under another thread count.
INT8_TOL = 1e-4


@pytest.fixture(scope="session")
def binary(cpp_binary):
    return cpp_binary


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    run = str(root / "run")
    spec = make_run(run, "mid_tiny")
    fp32_dir = str(root / "fp32")
    export(run, fp32_dir)
    sym, args, aux = A.load_symbol_params(fp32_dir)
    names = A.input_names(spec["modalities"])
    calib = [synthetic_inputs(spec, batch_size=16, seed=s) for s in range(3)]
    qsym, qargs, qaux, info = quantize_symbol(sym, args, aux, names, calib)
    int8_dir = str(root / "int8")
    sidecar = A.make_sidecar(spec, precision="int8", extra={"quantization": {"calib_mode": "naive"}})
    A.write_exported(int8_dir, qsym, qargs, qaux, sidecar)
    return {"spec": spec, "names": names, "fp32": fp32_dir, "int8": int8_dir}


def python_logits(model_dir, inputs):
    sym, args, aux = A.load_symbol_params(model_dir)
    return Runner(sym, args, aux, {k: v.shape for k, v in inputs.items()})(inputs)


@pytest.mark.parametrize("precision,tol", [("fp32", FP32_TOL), ("int8", INT8_TOL)])
@pytest.mark.parametrize("batch,missing", [(1, None), (3, "video"), (8, "audio")])
def test_cpp_matches_python_on_synthetic_inputs(binary, models, precision, tol, batch, missing):
    x = synthetic_inputs(models["spec"], batch_size=batch, seed=batch, missing=missing)
    out = cpp.run(binary, models[precision], x)
    ref = python_logits(models[precision], x)
    got = np.asarray(out["logits"], np.float32)
    assert got.shape == ref.shape == (batch, 4)
    assert np.abs(got - ref).max() <= tol
    probs = np.asarray(out["probabilities"])
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert out["predicted"] == [models["spec"]["labels"][i] for i in ref.argmax(1)]
    assert out["precision"] == precision and out["labels"] == models["spec"]["labels"]


def test_cpp_fp32_matches_gluon_block(binary, models):
    import mxnet as mx
    x = synthetic_inputs(models["spec"], batch_size=2, seed=7)
    block, _ = A.load_exported(models["fp32"])
    ref = block(*[mx.nd.array(x[n]) for n in models["names"]]).asnumpy()
    got = np.asarray(cpp.run(binary, models["fp32"], x)["logits"], np.float32)
    assert np.abs(got - ref).max() <= FP32_TOL


def test_cpp_bench_reports_latency(binary, models):
    out = cpp.run(binary, models["fp32"], synthetic_inputs(models["spec"], batch_size=1), bench=5, threads=1)
    lat = out["latency_ms"]
    assert lat["runs"] == 5 and 0 < lat["median"] <= lat["p95"] and lat["create"] > 0


@pytest.mark.parametrize("precision,tol", [("fp32", FP32_TOL), ("int8", INT8_TOL)])
def test_cpp_matches_python_on_real_features(binary, emodb_small_store, tmp_path, precision, tol):
    """Real EmoDB log-mel features through an audio model: C++ equals the Python symbol path."""
    import mxnet as mx
    from emotion_mx.data import FeatureStore, data_spec, load_arrays
    from emotion_mx.models import get_model
    store = FeatureStore(emodb_small_store)
    ds = data_spec(store, 0, ("audio",))
    keys = ("audio_feature", "max_audio_frames")
    net = get_model("audio_cnn", num_classes=len(store.labels), **ds["model_kwargs"])
    net.initialize(mx.init.Xavier(rnd_type="gaussian", magnitude=2))
    x, _ = load_arrays(store, store.ids(0, "test"), ("audio",), fold=0, **{k: ds["settings"][k] for k in keys})
    names = A.input_names(("audio",))
    net(*[mx.nd.array(x[n][:1]) for n in names])
    spec = {"name": "audio_cnn", "kwargs": ds["model_kwargs"], "modalities": ["audio"],
            "num_classes": len(store.labels), "labels": store.labels,
            "inputs": {n: list(x[n].shape[1:]) for n in names}, **ds["settings"]}
    model_dir = str(tmp_path / "fp32")
    A.export_block(net, spec, model_dir)
    if precision == "int8":   # calibrated on real training-split features
        calib, _ = load_arrays(store, store.ids(0, "train"), ("audio",), fold=0,
                               **{k: ds["settings"][k] for k in keys})
        sym, args, aux = A.load_symbol_params(model_dir)
        qsym, qargs, qaux, _ = quantize_symbol(sym, args, aux, names, [calib])
        model_dir = str(tmp_path / "int8")
        A.write_exported(model_dir, qsym, qargs, qaux, A.make_sidecar(spec, precision="int8"))
    ref = python_logits(model_dir, x)
    got = np.asarray(cpp.run(binary, model_dir, x)["logits"], np.float32)
    assert got.shape == (len(x["audio"]), len(store.labels))
    assert np.abs(got - ref).max() <= tol


# ---- bad input: one "error:" line, exit code 2 ------------------------------------------------

def run_raw(binary, args):
    proc = subprocess.run([binary] + args, capture_output=True, text=True)
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    return proc.returncode, lines


@pytest.fixture()
def npy_inputs(models, tmp_path):
    x = synthetic_inputs(models["spec"], batch_size=2)
    paths = {}
    for n, v in x.items():
        paths[n] = str(tmp_path / f"{n}.npy")
        np.save(paths[n], v)
    return paths


def _args(model, paths):
    out = ["--model", model]
    for n, p in paths.items():
        out += ["--input", f"{n}={p}"]
    return out


@pytest.mark.parametrize("case,expect", [
    ("missing_file", "cannot open"),
    ("wrong_shape", "model expects [B, 64, 16]"),
    ("wrong_dtype", "is not float32"),
    ("missing_input", "missing input 'video_mask'"),
    ("unknown_input", "no input named 'speech'"),
    ("batch_mismatch", "disagree on the batch size"),
    ("corrupt_params", "MXPredCreate failed"),
    ("no_sidecar", "model.json"),
    ("usage", "--model DIR is required"),
])
def test_cpp_bad_input_is_one_error_line(binary, models, npy_inputs, tmp_path, case, expect):
    paths = dict(npy_inputs)
    model = models["fp32"]
    if case == "missing_file":
        paths["audio"] = str(tmp_path / "nope.npy")
    elif case == "wrong_shape":
        np.save(paths["audio"], np.zeros((2, 10, 16), np.float32))
    elif case == "wrong_dtype":
        np.save(paths["text"], np.zeros((2, 12), np.float64))
    elif case == "missing_input":
        del paths["video_mask"]
    elif case == "unknown_input":
        paths["speech"] = paths["audio"]
    elif case == "batch_mismatch":
        np.save(paths["text"], np.zeros((3, 12), np.float32))
    elif case in ("corrupt_params", "no_sidecar"):
        model = str(tmp_path / "model")
        shutil.copytree(models["fp32"], model)
        if case == "corrupt_params":
            with open(os.path.join(model, A.EXPORT_PARAMS), "r+b") as f:
                f.seek(0)
                f.write(b"\xff" * 64)
        else:
            os.remove(os.path.join(model, A.SIDECAR))
    args = [] if case == "usage" else _args(model, paths)
    rc, lines = run_raw(binary, args)
    assert rc == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and expect in lines[0], lines[0]


def test_cpp_run_helper_raises_emotionmx_error(binary, models):
    x = synthetic_inputs(models["spec"], batch_size=1)
    del x["text"]
    with pytest.raises(EmotionMXError, match="missing input 'text'"):
        cpp.run(binary, models["fp32"], x)


# ---- hardening (issue 13): parameters of another graph, non-finite inputs

@pytest.mark.parametrize("other", [{"num_classes": 3}, {"vocab_size": 77}])
def test_cpp_params_of_another_graph_are_one_error_line(binary, models, npy_inputs, tmp_path, other):
    """Used to predict a uniform distribution and print it as a normal result."""
    run = str(tmp_path / "other_run")
    make_run(run, "mid_tiny", **other)
    export(run, str(tmp_path / "other"))
    model = str(tmp_path / "model")
    shutil.copytree(models["fp32"], model)
    shutil.copy(os.path.join(str(tmp_path / "other"), A.EXPORT_PARAMS), os.path.join(model, A.EXPORT_PARAMS))
    rc, lines = run_raw(binary, _args(model, npy_inputs))
    assert rc == 2 and len(lines) == 1, lines
    assert "does not belong to this graph" in lines[0] and "the graph expects" in lines[0], lines[0]


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_cpp_non_finite_input_is_one_error_line(binary, models, npy_inputs, bad):
    x = np.load(npy_inputs["audio"])
    x[1, 3, 2] = bad
    np.save(npy_inputs["audio"], x)
    rc, lines = run_raw(binary, _args(models["fp32"], npy_inputs))
    assert rc == 2 and len(lines) == 1 and "NaN or inf" in lines[0] and "'audio'" in lines[0], lines


def test_a_binary_older_than_the_cpp_sources_is_rebuilt(tmp_path):
    """compare_models rebuilds a wrapper built before the C++ sources last changed."""
    from emotion_mx.deploy.cpp import is_stale
    binary = tmp_path / "emotion_predict"
    binary.write_bytes(b"")
    os.utime(binary, (0, 0))                       # built in 1970: every source is newer
    assert is_stale(str(binary))
    future = time.time() + 3600
    os.utime(binary, (future, future))
    assert not is_stale(str(binary))
