"""Heads over pretrained encoders: per-layer statistics pooling and a learned layer weighting.

``layer_stats`` pools every layer's states ``(B, L, T, C)`` over the real steps of ``mask``
into mean and standard deviation ``(B, L, 2C)`` (what the embedding cache stores).
``LayerWeightedHead`` takes such ``(B, L, D)`` features: (1) standardise with fixed statistics
of the training split (``feat_mean``/``feat_std``, set by the trainer, not learned), (2) a learned
softmax weighting over the L layers (SUPERB, Yang et al. 2021) or one fixed ``layer``, (3) a
linear layer or a one-hidden-layer MLP.  ``EncoderClassifier`` chains an encoder, the pooling
and the head, so a head trained on cached features runs unchanged on raw features.
"""
from mxnet.gluon import HybridBlock, nn

__all__ = ["layer_stats", "LayerWeightedHead", "EncoderClassifier"]


def layer_stats(F, states, mask, std=True):
    """``(B, L, T, C)`` states + ``(B, T)`` mask -> ``(B, L, 2C)`` [mean, std] (or ``(B, L, C)``)."""
    m = F.reshape(mask, shape=(0, 1, -1, 1))                                   # (B, 1, T, 1)
    count = F.maximum(F.sum(m, axis=2, keepdims=True), 1.0)                    # (B, 1, 1, 1)
    mean = F.broadcast_div(F.sum(F.broadcast_mul(states, m), axis=2, keepdims=True), count)  # (B, L, 1, C)
    if not std:
        return F.reshape(mean, shape=(0, 0, -1))                               # (B, L, C)
    dev = F.broadcast_mul(F.square(F.broadcast_sub(states, mean)), m)          # (B, L, T, C)
    var = F.broadcast_div(F.sum(dev, axis=2, keepdims=True), count)            # (B, L, 1, C)
    out = F.concat(mean, F.sqrt(var + 1e-6), dim=3)                            # (B, L, 1, 2C)
    return F.reshape(out, shape=(0, 0, -1))                                    # (B, L, 2C)


class LayerWeightedHead(HybridBlock):
    """``(B, L, D)`` per-layer features -> logits ``(B, num_classes)``."""

    def __init__(self, num_layers, in_units, num_classes, hidden_units=0, dropout=0.0, layer=None,
                 prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        if layer is not None and not 0 <= layer < num_layers:
            raise ValueError(f"layer {layer} out of range 0..{num_layers - 1}")
        self._layer = layer
        with self.name_scope():
            self.feat_mean = self.params.get("feat_mean", shape=(num_layers, in_units), init="zeros",
                                             grad_req="null")
            self.feat_std = self.params.get("feat_std", shape=(num_layers, in_units), init="ones",
                                            grad_req="null")
            self.layer_logits = self.params.get("layer_logits", shape=(1, num_layers), init="zeros")
            self.drop = nn.Dropout(dropout) if dropout else None
            self.hidden = (nn.Dense(hidden_units, activation="relu", in_units=in_units, prefix="hidden_")
                           if hidden_units else None)
            self.out = nn.Dense(num_classes, in_units=hidden_units or in_units, prefix="out_")

    def layer_weights(self, F, layer_logits):
        return F.softmax(layer_logits, axis=-1)                                # (1, L)

    def hybrid_forward(self, F, x, feat_mean, feat_std, layer_logits):
        # 1. standardise with the training split's statistics
        x = F.broadcast_div(F.broadcast_sub(x, F.expand_dims(feat_mean, 0)),
                            F.expand_dims(feat_std, 0))                        # (B, L, D)
        # 2. one layer, or a softmax weighting over layers
        if self._layer is not None:
            h = F.reshape(F.slice_axis(x, axis=1, begin=self._layer, end=self._layer + 1),
                          shape=(0, -1))                                       # (B, D)
        else:
            # a GEMM over the layer axis (broadcast_mul's backward reduction is slow on CPU)
            w = self.layer_weights(F, layer_logits)                            # (1, L)
            h = F.FullyConnected(F.transpose(x, axes=(0, 2, 1)), weight=w, no_bias=True,
                                 num_hidden=1, flatten=False)                  # (B, D, 1)
            h = F.reshape(h, shape=(0, -1))                                    # (B, D)
        # 3. classifier
        if self.drop is not None:
            h = self.drop(h)
        if self.hidden is not None:
            h = self.hidden(h)
            if self.drop is not None:
                h = self.drop(h)
        return self.out(h)                                                     # (B, num_classes)


class EncoderClassifier(HybridBlock):
    """Pretrained encoder + per-layer pooling + :class:`LayerWeightedHead`: ``(x, mask) -> logits``.

    ``kind``: ``"sequence"`` (Whisper, MiniLM: states ``(B, L, T, C)`` pooled by ``layer_stats``;
    ``std`` adds the standard deviation) or ``"face"`` (mini-Xception over frames
    ``(B, N, 1, 64, 64)`` with a frame mask: the per-frame 128-d embeddings are averaged over
    real frames, one "layer").
    """

    def __init__(self, encoder, head, kind="sequence", std=True, prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        self._kind, self._std = kind, std
        with self.name_scope():
            self.encoder = encoder
            self.head = head

    def pooled(self, F, x, mask):
        """The head's input: per-layer pooled features ``(B, L, D)`` (what the embedding cache holds)."""
        if self._kind == "face":
            emb, _ = self.encoder(F.reshape(x, shape=(-3, -2)))                # (B*N, 128)
            emb = F.reshape_like(emb, mask, lhs_begin=0, lhs_end=1, rhs_begin=0, rhs_end=2)  # (B, N, 128)
            return layer_stats(F, F.expand_dims(emb, axis=1), mask, std=False)  # (B, 1, 128)
        states, m = self.encoder(x, mask)                                      # (B, L, T, C), (B, T)
        return layer_stats(F, states, m, std=self._std)                        # (B, L, D)

    def hybrid_forward(self, F, x, mask):
        return self.head(self.pooled(F, x, mask))                              # (B, num_classes)
