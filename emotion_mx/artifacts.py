"""The one module that owns artifact layout: run directories and exported models.

Run directory (written by training, read by evaluation, distillation, export, quantization)::

    RUN/config.yaml          resolved TrainConfig
    RUN/model.json           {"name", "kwargs", "modalities", "num_classes", "labels",
                              "inputs": {name: [shape without batch]}, "audio_feature", ...}
    RUN/norm.json            normalisation constants used for this run (from the store's fold)
    RUN/vocab.json           vocabulary used for this run (gluonnlp JSON), if text is used
    RUN/best.params          parameters of the epoch with the best validation score
    RUN/checkpoints/         epoch-NNNN.params / .states / .json (resumable)

Exported model directory (``tools/export.py``, read by C++, ONNX, predict, stream)::

    DIR/model-symbol.json, DIR/model-0000.params, DIR/model.json (sidecar)
"""
import os

from .errors import EmotionMXError
from .fileio import read_json, write_json

MODEL_SPEC = "model.json"
BEST_PARAMS = "best.params"
NORM = "norm.json"
VOCAB = "vocab.json"
LABELS = "labels.json"
CONFIG = "config.yaml"


def run_file(run_dir, name):
    return os.path.join(run_dir, name)


def save_model_spec(run_dir, spec):
    """``spec``: dict with at least name, kwargs, modalities, num_classes, labels, inputs."""
    missing = [k for k in ("name", "kwargs", "modalities", "num_classes", "labels", "inputs") if k not in spec]
    if missing:
        raise ValueError(f"model spec lacks {missing}")
    write_json(run_file(run_dir, MODEL_SPEC), spec)


def load_model_spec(run_dir):
    path = run_file(run_dir, MODEL_SPEC)
    if not os.path.isfile(path):
        raise EmotionMXError(f"{run_dir}: not a training run (no {MODEL_SPEC}); pass the --out folder of tools/train.py")
    return read_json(path)


def build_model(spec):
    """Instantiate the (uninitialised) Gluon block described by a model spec."""
    from .models import get_model
    return get_model(spec["name"], num_classes=spec["num_classes"],
                     modalities=tuple(spec["modalities"]), **spec["kwargs"])


def load_run_model(run_dir, ctx=None, params=None):
    """Rebuild the trained block of a run with its best (or given) parameters."""
    import mxnet as mx
    spec = load_model_spec(run_dir)
    path = params or run_file(run_dir, BEST_PARAMS)
    if not os.path.isfile(path):
        raise EmotionMXError(f"{run_dir}: no parameters at {path}; the run has not finished an epoch")
    net = build_model(spec)
    try:
        net.load_parameters(path, ctx=ctx or mx.cpu())
    except Exception as e:  # corrupt or mismatched params
        raise EmotionMXError(f"{path}: cannot load parameters ({str(e).splitlines()[0]}); "
                             "the file is corrupt or from another model") from None
    return net, spec
