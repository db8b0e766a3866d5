"""Build the pretrained encoders and load their checkpoints (installed package or a given path).

``build_encoder(name)`` -> the Gluon block of a preset, randomly initialised;
``load_encoder(name, path=None)`` -> the block with the checkpoint's weights;
``load_tokenizer(path=None)`` -> MiniLM's WordPiece tokenizer.  Block prefixes are stable
(``<preset>_``), so parameter files stay loadable across versions.
"""
import mxnet as mx

from ..errors import EmotionMXError
from ..models.fer_xception import FER_PRESETS, MiniXception, fer_weights
from ..models.minilm import MINILM_PRESETS, MiniLMEncoder, MiniLMTokenizer, minilm_weights
from ..models.whisper import WHISPER_PRESETS, WhisperEncoder, whisper_encoder_weights
from .sources import CHECKPOINTS, checkpoint_path, package_file

__all__ = ["ENCODERS", "build_encoder", "load_encoder", "load_tokenizer", "encoder_info"]

# preset -> (kind, block class, architecture); every value is data
ENCODERS = {name: ("whisper", WhisperEncoder, hp) for name, hp in WHISPER_PRESETS.items()}
ENCODERS.update({name: ("minilm", MiniLMEncoder, hp) for name, hp in MINILM_PRESETS.items()})
ENCODERS.update({name: ("fer", MiniXception, hp) for name, hp in FER_PRESETS.items()})
MODALITY = {"whisper": "audio", "minilm": "text", "fer": "video"}


def _check(name):
    if name not in ENCODERS:
        raise EmotionMXError(f"unknown pretrained encoder {name!r}; choose from {', '.join(sorted(ENCODERS))}")
    return ENCODERS[name]


def encoder_info(name):
    """``{'kind', 'modality', 'num_states' (hidden states returned), 'units', 'licence', 'arch'}``."""
    kind, _, hp = _check(name)
    layers = hp["num_layers"] + 1 if kind != "fer" else 1
    units = hp["units"] if kind != "fer" else hp["block_channels"][-1]
    return dict(kind=kind, modality=MODALITY[kind], num_states=layers, units=units,
                licence=CHECKPOINTS[name][3], arch=dict(hp))


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


def load_encoder(name, path=None, ctx=None):
    """The encoder ``name`` with the weights of its checkpoint (``path`` or the installed package)."""
    path = checkpoint_path(name, path)
    weights = _read_weights(name, path)
    block = build_encoder(name)
    params = block.collect_params()
    suffixes = {k[len(block.prefix):]: p for k, p in params.items()}
    missing = sorted(set(suffixes) - set(weights))
    if missing:   # a mapping bug, not a user error: say which
        raise RuntimeError(f"{name}: no checkpoint value for parameters {missing[:5]}")
    block.initialize(ctx=ctx or mx.cpu())
    for suffix, p in suffixes.items():
        p.set_data(mx.nd.array(weights[suffix], dtype="float32"))
    block.checkpoint = path
    return block


def load_tokenizer(path=None, max_length=None):
    """MiniLM's tokenizer from ``path`` or the installed package's ``tokenizer.json``."""
    path = path or package_file("minilm_l6", "tokenizer.json")
    return MiniLMTokenizer(path, **({"max_length": max_length} if max_length else {}))
