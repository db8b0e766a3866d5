"""Helpers for deployment tests and benchmarks: a small run directory with random weights and
inputs that obey the DESIGN.md contract."""
import dataclasses
import os

import mxnet as mx
import numpy as np

from .. import artifacts as A
from ..contract import input_names, input_shapes, random_inputs
from ..fileio import write_json
from ..models import get_model, model_input_settings, model_input_sizes, valid_kwargs
from ..store import DataSettings

LABELS = ["anger", "happiness", "neutral", "sadness"]
SMALL_FEATURES = dict(audio_dim=16, audio_frames=64, vocab_size=60, max_tokens=12, num_frames=4,
                      frame_size=48, frame_channels=1)


def spec_for(name, num_classes=4, modalities=None, **features):
    """``(net, ModelSpec)`` for registry model ``name`` with small feature sizes."""
    needs = model_input_settings(name, modalities)     # what pretrained encoders take
    f = dict(SMALL_FEATURES)
    f.update(model_input_sizes(name, modalities))
    f.update(features)
    kwargs = {k: v for k, v in f.items() if k in valid_kwargs(name)}
    net = get_model(name, num_classes=num_classes, modalities=modalities, **kwargs)
    settings = {k: v for k, v in needs.items() if k not in SMALL_FEATURES}
    data = DataSettings(net.modalities, max_audio_frames=f["audio_frames"], max_tokens=f["max_tokens"],
                        num_frames=f["num_frames"], frame_size=f["frame_size"], frame_channels=f["frame_channels"],
                        preprocessing={"audio": {"sample_rate": 16000, "n_mels": f["audio_dim"], "hop_ms": 10.0,
                                                 "whisper": "audio_feature" in settings}}, **settings)
    spec = A.ModelSpec(name=name, kwargs=kwargs, modalities=net.modalities, num_classes=num_classes,
                       labels=LABELS[:num_classes], inputs=input_shapes(net.modalities, **f), data=data)
    return net, spec


def make_run(run_dir, name="mid_tiny", seed=0, **kw):
    """A run directory as training writes it (model.json, best.params, norm.json, vocab.json)."""
    mx.random.seed(seed)
    np.random.seed(seed)
    net, spec = spec_for(name, **kw)
    net.initialize(mx.init.Xavier())
    net(*[mx.nd.zeros((1,) + tuple(spec.inputs[n])) for n in input_names(spec.modalities)])  # materialise
    os.makedirs(run_dir, exist_ok=True)
    A.save_model_spec(run_dir, spec)
    net.save_parameters(A.run_file(run_dir, A.BEST_PARAMS))
    n_mels = spec.data.preprocessing["audio"]["n_mels"]
    write_json(A.run_file(run_dir, A.NORM), {"logmel": {"mean": [0.0] * n_mels, "std": [1.0] * n_mels}})
    if "text" in spec.modalities:
        vocab = ["<unk>", "<pad>", "<bos>", "<eos>"] + [f"w{i}" for i in range(spec.kwargs["vocab_size"] - 4)]
        write_json(A.run_file(run_dir, A.VOCAB), {"idx_to_token": vocab})
    return spec


def synthetic_inputs(spec_or_sidecar, batch_size=4, seed=0, missing=None):
    """Contract-conforming random inputs with random lengths (:func:`contract.random_inputs`);
    ``missing``: a modality whose mask rows are all zero."""
    if "symbol_file" in spec_or_sidecar:
        shapes = {i["name"]: i["shape"][1:] for i in spec_or_sidecar["inputs"]}
        vocab = spec_or_sidecar["model"]["kwargs"].get("vocab_size", 50)
    else:
        shapes = spec_or_sidecar["inputs"]
        vocab = spec_or_sidecar["kwargs"].get("vocab_size", 50)
    return random_inputs(shapes, batch_size=batch_size, vocab_size=vocab, seed=seed, masks="random",
                         missing=missing)


def make_whisper_logmel_export(out_dir, name="audio_cnn", modalities=("audio",), audio_frames=400, seed=0,
                               whisper=True, max_seconds=30.0):
    """Export registry preset ``name`` (random weights) whose audio input is ``(audio_frames, 80)``
    Whisper log-mel (data settings ``audio_feature="whisper_logmel"``, a store built with
    ``audio.whisper`` and ``audio.max_seconds``: the sidecar then carries ``frontend.audio`` and
    the C++ wrapper takes raw WAV); ``whisper=False``: the same shapes with plain ``logmel``
    settings (no front end).  Returns the initialised block."""
    mx.random.seed(seed)
    net, spec = spec_for(name, modalities=modalities, audio_dim=80, audio_frames=audio_frames)
    if whisper:
        pre = dict(spec.data.preprocessing)
        pre["audio"] = dict(pre.get("audio", {}), whisper=True, max_seconds=float(max_seconds))
        spec = dataclasses.replace(spec, data=dataclasses.replace(spec.data, audio_feature="whisper_logmel",
                                                                  preprocessing=pre))
    net.initialize(mx.init.Xavier())
    A.export_block(net, spec, out_dir)
    return net
