"""Build the pretrained encoders and load their checkpoints (installed package or a given path).

``build_encoder(name)`` -> the Gluon block of a preset, randomly initialised;
``load_encoder(name, path=None)`` -> the block with the checkpoint's weights;
``load_tokenizer(path=None)`` -> MiniLM's WordPiece tokenizer.  Block prefixes are stable
(``<preset>_``), so parameter files stay loadable across versions.
"""
import re

import mxnet as mx

from ..errors import EmotionMXError
from ..models import pretrained as mp
from ..models.fer_xception import fer_weights
from ..models.minilm import MiniLMTokenizer, minilm_weights
from ..models.whisper import whisper_encoder_weights
from .sources import CHECKPOINTS, checkpoint_path, package_file

__all__ = ["ENCODERS", "build_encoder", "load_encoder", "load_tokenizer", "encoder_info",
           "load_pretrained", "layer_groups", "prepare_pretrained"]

ENCODERS = mp.ENCODERS


def _check(name):
    mp.encoder_info(name)          # one error line for an unknown name
    return ENCODERS[name][:3]


def encoder_info(name):
    """:func:`emotion_mx.models.pretrained.encoder_info` plus the checkpoint's ``licence``."""
    return dict(mp.encoder_info(name), licence=CHECKPOINTS[name][3])


def build_encoder(name):
    _, cls, hp = _check(name)
    return cls(prefix=f"{name}_", **hp)


def _read_weights(name, path):
    kind, _, hp = _check(name)
    if kind == "whisper":
        from .ctranslate2_file import read_ctranslate2
        _, variables = read_ctranslate2(path, spec="WhisperSpec", prefix="encoder/")
        return whisper_encoder_weights(variables, where=path, **hp)
    if kind == "minilm":
        from .safetensors_file import read_safetensors
        return minilm_weights(read_safetensors(path), where=path, **hp)
    from .keras_hdf5 import read_keras_hdf5
    layers, weights = read_keras_hdf5(path)
    return fer_weights(layers, weights, where=path, **hp)


def _set_weights(block, name, path):
    weights = _read_weights(name, path)
    params = block.collect_params()
    suffixes = {k[len(block.prefix):]: p for k, p in params.items()}
    missing = sorted(set(suffixes) - set(weights))
    if missing:   # a mapping bug, not a user error: say which
        raise RuntimeError(f"{name}: no checkpoint value for parameters {missing[:5]}")
    for suffix, p in suffixes.items():
        p.set_data(mx.nd.array(weights[suffix], dtype="float32"))
    block.checkpoint = path


def load_encoder(name, path=None, ctx=None):
    """The encoder ``name`` with the weights of its checkpoint (``path`` or the installed package)."""
    path = checkpoint_path(name, path)
    block = build_encoder(name)
    block.initialize(ctx=ctx or mx.cpu())
    _set_weights(block, name, path)
    return block


def load_pretrained(net, checkpoints=None):
    """Copy the checkpoints into every pretrained slot of the initialised ``net``
    (:func:`emotion_mx.models.pretrained.pretrained_slots`); ``checkpoints``: encoder name ->
    file (default: the installed weight package).  Returns ``{name: checkpoint path}``."""
    checkpoints = dict(checkpoints or {})
    unknown = sorted(set(checkpoints) - set(ENCODERS))
    if unknown:
        raise EmotionMXError(f"init.checkpoints names {unknown[0]!r}, not a pretrained encoder; "
                             f"choose from {', '.join(sorted(ENCODERS))}")
    loaded = {}
    for slot in mp.pretrained_slots(net):
        name = slot.pretrained_name
        path = checkpoint_path(name, checkpoints.get(name))
        _set_weights(slot.encoder, name, path)
        loaded[name] = path
    return loaded


_DEPTH = re.compile(r"_(?:layers_layer|blocks_block)(\d+)_")
_TOP = ("final_norm_", "head_")


def layer_groups(encoder):
    """The encoder's parameters by depth: ``[stem, layer 0, ..., layer N-1, top]`` (the input
    embeddings or convolutional stem first, the final norm or classifier last; MiniLM's top
    group is empty, its layers end in their own LayerNorm)."""
    params = encoder.collect_params()
    depth = {}
    for name in params:
        m = _DEPTH.search(name[len(encoder.prefix) - 1:])
        depth[name] = int(m.group(1)) + 1 if m else None
    n = max([d for d in depth.values() if d is not None], default=0)
    groups = [[] for _ in range(n + 2)]
    for name, p in params.items():
        d = depth[name]
        if d is None:
            d = n + 1 if name[len(encoder.prefix):].startswith(_TOP) else 0
        groups[d].append(p)
    return groups


def prepare_pretrained(net, *, checkpoints=None, load=True, freeze_layers=0, lr_mult=1.0, layer_decay=1.0):
    """Fine-tuning set-up of every pretrained slot in ``net`` (initialised, shapes known):
    (1) load the checkpoints (``load``), (2) freeze the stem and the first ``freeze_layers``
    layers (``-1``: the whole encoder), (3) scale the learning rate of the rest:
    ``lr_mult * layer_decay ** (depth from the top)`` (layer-wise decay, the top group gets
    ``lr_mult``).  Returns a summary for the run's log: ``{name: {...}}``."""
    loaded = load_pretrained(net, checkpoints) if load else {}
    out = {}
    for slot in mp.pretrained_slots(net):
        groups = layer_groups(slot.encoder)
        frozen = len(groups) if freeze_layers < 0 else min(len(groups), freeze_layers + 1 if freeze_layers else 0)
        for g, params in enumerate(groups):
            for p in params:
                if g < frozen:
                    p.grad_req = "null"
                else:
                    p.lr_mult = lr_mult * layer_decay ** (len(groups) - 1 - g)
        trainable = sum(p.data().size for ps in groups[frozen:] for p in ps)
        out[slot.pretrained_name] = dict(checkpoint=loaded.get(slot.pretrained_name), frozen_groups=frozen,
                                         groups=len(groups), trainable_params=int(trainable))
    return out


def load_tokenizer(path=None, max_length=None):
    """MiniLM's tokenizer from ``path`` or the installed package's ``tokenizer.json``."""
    path = path or package_file("minilm_l6", "tokenizer.json")
    return MiniLMTokenizer(path, **({"max_length": max_length} if max_length else {}))
