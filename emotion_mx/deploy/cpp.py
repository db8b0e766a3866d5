"""Build and drive the C++ wrapper (cpp_deploy/) from Python: tests, benchmarks, demo."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

from .. import artifacts as A
from ..errors import EmotionMXError
from ..training.metrics import classification_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCE_DIR = os.path.join(ROOT, "cpp_deploy")
BINARY = "emotion_predict"


def build(build_dir, build_type="Release", jobs=2, python=None):
    """Configure and build cpp_deploy/ into ``build_dir``; returns the emotion_predict path."""
    if shutil.which("cmake") is None:
        raise EmotionMXError("cmake is not installed; the C++ wrapper needs cmake >= 3.16 and a C++17 compiler")
    python = python or sys.executable
    cfg = ["cmake", "-S", SOURCE_DIR, "-B", build_dir, f"-DCMAKE_BUILD_TYPE={build_type}",
           f"-DEMX_PYTHON={python}"]
    for cmd in (cfg, ["cmake", "--build", build_dir, "-j", str(jobs)]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
            raise EmotionMXError(f"C++ build failed ({' '.join(cmd[:2])}):\n" + "\n".join(tail))
    path = os.path.join(build_dir, BINARY)
    if not os.path.isfile(path):
        raise EmotionMXError(f"C++ build finished without {path}")
    return path


def find_binary(build_dir=None):
    """emotion_predict from ``build_dir``, $EMOTION_MX_CPP_BUILD or cpp_deploy/build."""
    for d in (build_dir, os.environ.get("EMOTION_MX_CPP_BUILD"), os.path.join(SOURCE_DIR, "build")):
        if d and os.path.isfile(os.path.join(d, BINARY)):
            return os.path.join(d, BINARY)
    return None


def is_stale(binary):
    """True when a C++ source under cpp_deploy/ (src, tools, include, CMakeLists.txt) is newer
    than ``binary``: a checkout updated since the last build (CMake rebuilds incrementally)."""
    built = os.path.getmtime(binary)
    for sub in ("src", "tools", "include"):
        for root, _, files in os.walk(os.path.join(SOURCE_DIR, sub)):
            if any(os.path.getmtime(os.path.join(root, f)) > built for f in files):
                return True
    return os.path.getmtime(os.path.join(SOURCE_DIR, "CMakeLists.txt")) > built


def run(binary, model_dir, inputs, bench=0, threads=0, workdir=None, timeout=300, audio=(),
        dump_features=None):
    """Run emotion_predict on ``inputs`` (dict name → float32 array, batch first) and, for a model
    whose sidecar has ``frontend.audio``, on raw WAV files ``audio`` (see :func:`run_audio`).

    Returns the parsed JSON; a non-zero exit raises EmotionMXError with its error line.
    """
    own = workdir is None
    workdir = workdir or tempfile.mkdtemp(prefix="emx_cpp_")
    try:
        args = [binary, "--model", model_dir]
        for path in audio:
            args += ["--audio", os.fspath(path)]
        if dump_features:
            args += ["--dump-features", os.fspath(dump_features)]
        for name, x in inputs.items():
            path = os.path.join(workdir, f"{name}.npy")
            np.save(path, np.ascontiguousarray(x, dtype="<f4"))
            args += ["--input", f"{name}={path}"]
        if bench:
            args += ["--bench", str(bench)]
        if threads:
            args += ["--threads", str(threads)]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
            # the binary's own "error: ..." line, without its prefix: the CLI adds "error: " once
            detail = lines[-1][len("error:"):].strip() if lines else proc.stderr.strip()[-300:]
            raise EmotionMXError(f"emotion_predict failed: {detail}")
        return json.loads(proc.stdout)
    finally:
        if own:
            shutil.rmtree(workdir, ignore_errors=True)


def run_audio(binary, model_dir, wav_files, inputs=None, dump_features=None, **kw):
    """Run emotion_predict on raw WAV files (16-bit PCM or float32, at the front end's rate; one
    batch row each) for a model whose sidecar has ``frontend.audio`` (Whisper log-mel): the C++
    front end computes inputs ``audio``/``audio_mask``; ``inputs`` (name → array) gives other
    modalities, and a modality given neither way is missing (zeros, mask 0).  ``dump_features``:
    a ``.npy`` path where C++ writes the ``(B, T, n_mels)`` audio input it computed.

    Returns the parsed JSON (also ``audio``: per file its front-end frames and the frames used)."""
    if not wav_files:
        raise EmotionMXError("run_audio needs at least one WAV file")
    return run(binary, model_dir, dict(inputs or {}), audio=list(wav_files), dump_features=dump_features, **kw)


def ensure_binary(build_dir=None):
    """emotion_predict, built (or rebuilt when the C++ sources changed) on first use."""
    binary = find_binary(build_dir)
    if binary is None or is_stale(binary):        # first use, or the C++ sources changed since
        binary = build(os.path.dirname(binary) if binary else (build_dir or os.path.join(SOURCE_DIR, "build")))
    return binary


def predict_audio(model_dir, wav_files, build_dir=None):
    """C++ predictions of an exported Whisper-log-mel model on raw WAV files
    (``emotion-mx cpp-predict --audio``): one row per file with its predicted label and class
    probabilities."""
    sidecar = A.read_sidecar(model_dir)                 # fail on a bad folder before any build
    if not (sidecar.get("frontend") or {}).get("audio"):
        raise EmotionMXError(f"{model_dir}: the model has no raw-audio front end (model.json has no "
                             "frontend.audio; only models on Whisper log-mel features have one); "
                             "run it on a feature store with --data")
    out = run_audio(ensure_binary(build_dir), model_dir, wav_files)
    return [{"file": a["file"], "predicted": p, "probabilities": dict(zip(out["labels"], probs)),
             "frames": a["frames"], "used_frames": a["used_frames"]}
            for a, p, probs in zip(out["audio"], out["predicted"], out["probabilities"])]


def store_inputs(model_dir, data_dir, split="test", fold=0, limit=None):
    """Inputs for a store split, prepared as the exported model's sidecar says.

    Returns (ids, inputs: dict name → float32 array, labels: int array).
    """
    data = A.load_run_split(model_dir, data_dir, split, fold, limit=limit)
    return data.ids, data.inputs, data.labels


def predict_store(binary, model_dir, data_dir, split="test", fold=0, batch_size=32, limit=None):
    """C++ predictions for a store split, prepared as the exported model's sidecar says.

    Returns {'ids', 'labels' (int), 'predicted' (int), 'probabilities'}; used by the demo's
    thin C++ step.
    """
    ids, inputs, labels = store_inputs(model_dir, data_dir, split=split, fold=fold, limit=limit)
    probs = []
    for s in range(0, len(ids), batch_size):
        out = run(binary, model_dir, {k: v[s:s + batch_size] for k, v in inputs.items()})
        probs += out["probabilities"]
    probs = np.asarray(probs, np.float32)
    return {"ids": ids, "labels": labels, "predicted": probs.argmax(1), "probabilities": probs}


def compare_models(model_dirs, data_dir, split="test", fold=0, bench=50, build_dir=None):
    """One row per exported model (tools/cpp_predict.py): accuracy and UA of the C++ wrapper
    on a store split, params size and the C++ latency at batch 1.  Builds the wrapper on
    first use."""
    sidecars = {m: A.read_sidecar(m) for m in model_dirs}     # fail on a bad folder before any work
    binary = ensure_binary(build_dir)
    rows = []
    for model_dir in model_dirs:
        labels = sidecars[model_dir]["labels"]
        res = predict_store(binary, model_dir, data_dir, split=split, fold=fold)
        m = classification_metrics(res["labels"], res["predicted"], len(labels), labels)
        one = store_inputs(model_dir, data_dir, split, fold, limit=1)[1]
        timing = run(binary, model_dir, one, bench=bench).get("latency_ms", {})
        rows.append({"model": model_dir, "precision": sidecars[model_dir].get("precision", "fp32"),
                     "accuracy": m["accuracy"], "unweighted_accuracy": m["unweighted_accuracy"],
                     "params_mb": os.path.getsize(os.path.join(model_dir, A.EXPORT_PARAMS)) / 1e6,
                     "latency_ms_batch1": timing.get("median", float("nan"))})
    return rows
