"""The C++ wrapper cross-built for Linux aarch64 (cpp_deploy/cross/build_aarch64.sh) and run under
qemu-aarch64-static: its probabilities equal the x86 C++ build's and Python's on real-data exports.

Models are trained tiny (two epochs) on real data: an EmoDB audio model, a tri-modal fusion model
(EmoDB speech + CK+ faces + ISEAR sentences paired by label, configs/datasets/trimodal.yaml) and a
student distilled from it.  Run with ``-s`` to see the parity figures.
"""
import collections
import os
import shutil
import subprocess

import numpy as np
import pytest

from conftest import copy_media
from emotion_mx import artifacts as A
from emotion_mx.deploy import cpp
from emotion_mx.deploy.export import export
from emotion_mx.deploy.runtime import Runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "cpp_deploy", "cross", "build_aarch64.sh")
WHEEL_CACHE = os.path.join(ROOT, "work", "cross-aarch64", "wheel")   # gitignored; kept between runs
TOL = 1e-5
QUIET = dict(progress=False, echo=lambda *a: None)

pytestmark = pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")


@pytest.fixture(scope="session")
def arm_run_sh(tmp_path_factory):
    """The aarch64 bundle's run.sh, built once per session (the wheel download is cached)."""
    if shutil.which("qemu-aarch64-static") is None:
        pytest.skip("qemu-aarch64-static is not installed (apt-get install -y qemu-user-static)")
    work = str(tmp_path_factory.mktemp("cross_aarch64"))
    env = dict(os.environ, EMX_WHEEL_DIR=WHEEL_CACHE)
    proc = subprocess.run(["bash", SCRIPT, work], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
        reason = lines[-1] if lines else proc.stderr.strip()[-300:]
        if "cmake configure failed" in reason or "cross build failed" in reason:
            pytest.fail(reason)                 # the toolchain is there and the build broke
        pytest.skip(f"aarch64 cross build unavailable: {reason}")
    return os.path.join(work, "emotion_predict-aarch64", "run.sh")


@pytest.fixture(scope="session")
def x86_binary(cpp_binary):
    return cpp_binary


def _train(store, out, model, modalities, **data):
    from emotion_mx.training import train
    from emotion_mx.training.config import load_train_config
    cfg = load_train_config(None, {"model": {"name": model}, "data": {"modalities": modalities, **data},
                                   "epochs": 2, "batch_size": 8, "patience": None, "optim": {"lr": 0.002}})
    train(cfg, store, out, fold=0, **QUIET)
    return out


@pytest.fixture(scope="module")
def trimodal_store(real_data, tmp_path_factory):
    """50 real tri-modal items (2 per part and class) composed as configs/datasets/trimodal.yaml."""
    from emotion_mx.build import build_dataset, read_items
    from emotion_mx.config import DatasetConfig, load_config, replace
    from emotion_mx.manifest import write_manifest
    cfg = load_config(os.path.join(ROOT, "configs", "datasets", "trimodal.yaml"), DatasetConfig)
    for d in ("emodb", "ckplus48", "isear"):
        if not os.path.isdir(os.path.join(real_data, d)):
            pytest.skip(f"no {d}/ under {real_data}")
    items, _ = read_items("compose", real_data, cfg)
    root = tmp_path_factory.mktemp("trimodal_root")
    picked, count = [], collections.Counter()
    for it in sorted(items, key=lambda it: (it.group, it.label, it.id)):
        if count[(it.group, it.label)] < 2:
            count[(it.group, it.label)] += 1
            picked.append(it)
    copy_media(picked, real_data, str(root))                 # only the picked files (~100 small ones)
    write_manifest(str(root / "manifest.jsonl"), picked)
    out = str(tmp_path_factory.mktemp("trimodal_store"))
    build_dataset("manifest", str(root), out, cfg=replace(cfg, corpus="manifest", reader={}), progress=False)
    return out


@pytest.fixture(scope="module")
def exports(emodb_small_store, trimodal_store, tmp_path_factory):
    """{name: (exported model dir, feature store)} for the three real-data models."""
    from emotion_mx.training import distill
    root = tmp_path_factory.mktemp("arm_models")
    runs = {
        "emodb_audio": (_train(emodb_small_store, str(root / "audio_run"), "audio_cnn", ["audio"]),
                        emodb_small_store),
        "trimodal_fusion": (_train(trimodal_store, str(root / "fusion_run"), "mid_tiny",
                                   ["audio", "text", "video"], max_audio_frames=200, max_tokens=12),
                            trimodal_store),
    }
    distill(runs["trimodal_fusion"][0], "mid_student", trimodal_store, str(root / "student_run"),
            alpha=0.7, temperature=3.0, epochs=1, **QUIET)
    runs["distilled_student"] = (str(root / "student_run"), trimodal_store)
    out = {}
    for name, (run, store) in runs.items():
        export(run, str(root / name))
        out[name] = (str(root / name), store)
    return out


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.mark.parametrize("name", ["emodb_audio", "trimodal_fusion", "distilled_student"])
def test_arm_build_matches_x86_and_python(arm_run_sh, x86_binary, exports, name):
    model_dir, store = exports[name]
    ids, x, _ = cpp.store_inputs(model_dir, store, split="test")
    arm = cpp.run(arm_run_sh, model_dir, x)               # one emulated run for the whole split
    x86 = cpp.run(x86_binary, model_dir, x)
    sym, args, aux = A.load_symbol_params(model_dir)
    py = _softmax(Runner(sym, args, aux, {k: v.shape for k, v in x.items()})(x).astype(np.float64))
    p_arm = np.asarray(arm["probabilities"], np.float64)
    p_x86 = np.asarray(x86["probabilities"], np.float64)
    d_x86, d_py = np.abs(p_arm - p_x86).max(), np.abs(p_arm - py).max()
    print(f"\n{name}: {len(ids)} test items, {len(arm['labels'])} classes; "
          f"max |p_arm - p_x86| = {d_x86:.2e}, max |p_arm - p_python| = {d_py:.2e}; "
          f"same predicted class: {arm['predicted'] == x86['predicted']}")
    assert p_arm.shape == p_x86.shape == py.shape == (len(ids), len(A.read_sidecar(model_dir)["labels"]))
    assert d_x86 <= TOL and d_py <= TOL
    assert arm["predicted"] == x86["predicted"]


def test_arm_binary_defaults_to_naive_engine(arm_run_sh, exports, tmp_path):
    """Without run.sh and without MXNET_ENGINE_TYPE, the aarch64 emotion_predict starts
    NaiveEngine (its edge default, cpp_deploy/cross/edge_defaults.cpp)."""
    model_dir, store = exports["emodb_audio"]
    _, x, _ = cpp.store_inputs(model_dir, store, split="test", limit=1)
    bundle = os.path.dirname(arm_run_sh)
    env = {k: v for k, v in os.environ.items() if k != "MXNET_ENGINE_TYPE"}
    env.update(QEMU_LD_PREFIX="/usr/aarch64-linux-gnu", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               LD_LIBRARY_PATH=":".join([os.path.join(bundle, "lib", "armpl-stubs"),
                                         "/usr/lib/aarch64-linux-gnu/openblas-pthread", "/usr/lib/aarch64-linux-gnu"]))
    args = ["qemu-aarch64-static", os.path.join(bundle, "bin", "emotion_predict"), "--model", model_dir]
    for name, v in x.items():
        np.save(tmp_path / f"{name}.npy", v)
        args += ["--input", f"{name}={tmp_path / name}.npy"]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-300:]
    assert "MXNet start using engine: NaiveEngine" in proc.stderr


def test_arm_runs_int8_export_with_its_own_kernels(arm_run_sh, x86_binary, exports, tmp_path):
    """The aarch64 wheel carries oneDNN's aarch64 kernels for the quantized operators: an INT8
    export (calibrated on real training features) runs under emulation.  Its outputs are not
    x86 INT8's (other kernels); the printed figures are the ones docs/deployment.md quotes."""
    from emotion_mx.deploy.quantize import quantize_symbol
    model_dir, store = exports["emodb_audio"]
    sidecar = A.read_sidecar(model_dir)
    names = [i["name"] for i in sidecar["inputs"]]
    _, calib, _ = cpp.store_inputs(model_dir, store, split="train")
    sym, args, aux = A.load_symbol_params(model_dir)
    qsym, qargs, qaux, _ = quantize_symbol(sym, args, aux, names, [calib])
    int8_dir = str(tmp_path / "int8")
    A.write_exported(int8_dir, qsym, qargs, qaux, dict(sidecar, precision="int8"))
    ids, x, _ = cpp.store_inputs(model_dir, store, split="test")
    arm = cpp.run(arm_run_sh, int8_dir, x)
    x86 = cpp.run(x86_binary, int8_dir, x)
    fp32 = _softmax(Runner(sym, args, aux, {k: v.shape for k, v in x.items()})(x).astype(np.float64))
    p_arm = np.asarray(arm["probabilities"], np.float64)
    p_x86 = np.asarray(x86["probabilities"], np.float64)
    agree = lambda p: float(np.mean(p.argmax(1) == fp32.argmax(1)))
    print(f"\nINT8 emodb_audio, {len(ids)} test items: max |p_arm - p_x86| = {np.abs(p_arm - p_x86).max():.2e}, "
          f"max |p_arm - p_fp32| = {np.abs(p_arm - fp32).max():.2e}, max |p_x86 - p_fp32| = "
          f"{np.abs(p_x86 - fp32).max():.2e}; argmax = fp32's: arm {agree(p_arm):.2f}, x86 {agree(p_x86):.2f}")
    assert arm["precision"] == "int8" and p_arm.shape == fp32.shape
    assert np.all(np.isfinite(p_arm)) and np.allclose(p_arm.sum(1), 1.0, atol=1e-5)


def test_arm_whisper_frontend_matches_librosa(arm_run_sh, tmp_path):
    """emotion_predict --audio on aarch64 (another compiler and libm): the C++ Whisper log-mel
    front end still equals whisper_logmel (librosa on x86)."""
    import soundfile as sf
    from emotion_mx.deploy.testing import make_whisper_logmel_export
    from emotion_mx.features.whisper_frontend import whisper_logmel
    model = str(tmp_path / "whisper")
    make_whisper_logmel_export(model, audio_frames=400)
    t = np.arange(int(3.3 * 16000)) / 16000
    wave = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * np.random.default_rng(0).standard_normal(len(t)))
    wav, dump = str(tmp_path / "clip.wav"), str(tmp_path / "features.npy")
    sf.write(wav, wave.astype(np.float32), 16000, subtype="FLOAT")
    out = cpp.run_audio(arm_run_sh, model, [wav], dump_features=dump)
    ref = whisper_logmel(sf.read(wav, dtype="float32")[0])
    d = np.abs(np.load(dump)[0, :len(ref)] - ref).max()
    print(f"\naarch64 Whisper log-mel vs librosa: max |diff| = {d:.2e} ({len(ref)} frames)")
    assert out["audio"][0]["frames"] == len(ref) == 330
    assert d <= 1e-5

