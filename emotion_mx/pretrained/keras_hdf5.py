"""Keras 2 HDF5 model files through ``h5py``: the topology (``model_config``) and the weights.

Only the file is read (never Keras or TensorFlow): the topology is the JSON of the root's
``model_config`` attribute, the weights live under ``model_weights/<layer>/<layer>.../<w>:0``.
"""
import json
import os

import numpy as np

from ..errors import EmotionMXError
from ..optional import require


def read_keras_hdf5(path):
    """``(layers, weights)``: ``layers`` = [{'class_name', 'name', 'config', 'inbound'}] in file
    order; ``weights`` = {layer_name: {weight_name: float32 ndarray}} (``kernel``, ``bias``,
    ``gamma``, ``moving_mean``, ``depthwise_kernel``...)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise EmotionMXError(f"{path}: Keras HDF5 model file not found")
    h5py = require("h5py", "pretrained", "reading a Keras HDF5 model")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise EmotionMXError(f"{path}: not a readable HDF5 file ({str(e).splitlines()[0]}); "
                             "download or copy the checkpoint again") from None
    with f:
        if "model_config" not in f.attrs or "model_weights" not in f:
            raise EmotionMXError(f"{path}: not a Keras model file (no model_config attribute or "
                                 "model_weights group); expected a model saved with model.save()")
        cfg = f.attrs["model_config"]
        cfg = json.loads(cfg.decode("utf-8") if isinstance(cfg, bytes) else cfg)
        layers = []
        for layer in cfg.get("config", {}).get("layers", []):
            nodes = layer.get("inbound_nodes") or []
            inbound = [n[0] for n in nodes[0]] if nodes else []
            layers.append({"class_name": layer["class_name"], "name": layer["name"],
                           "config": layer["config"], "inbound": inbound})
        weights = {}
        try:
            group = f["model_weights"]
            for lname in group:
                found = {}

                def visit(name, obj, found=found):
                    if hasattr(obj, "shape"):
                        found[name.rsplit("/", 1)[-1].split(":")[0]] = np.asarray(obj, dtype=np.float32)
                group[lname].visititems(visit)
                if found:
                    weights[lname] = found
        except (OSError, KeyError) as e:
            raise EmotionMXError(f"{path}: truncated or damaged HDF5 weights ({str(e).splitlines()[0]})") from None
    return layers, weights
