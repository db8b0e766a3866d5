"""Small building blocks shared by every model family: masked pooling, presence, positions.

Masking conventions (see docs/models.md):

* a mask is float32 ``(B, T)`` with 1 = real step, 0 = padding; an all-zero row means the
  modality is missing for that sample;
* ``presence(F, mask) -> (B,)`` is the max over the mask row, computed in-graph;
* every pooling returns exactly zero for an all-zero mask row (no NaN, no division by zero).
"""
from mxnet.gluon import HybridBlock, nn

from ..contract import MODALITIES

__all__ = ["presence", "masked_mean", "MaskedPool", "PositionEmbedding", "downsample_mask",
           "MODALITIES", "NEG_INF"]

# Large finite negative added to masked attention scores: exp() of it underflows to exactly 0
# in float32 without producing NaN (unlike -inf when a whole row is masked).
NEG_INF = -1e9


def presence(F, mask):
    """(B, T) mask -> (B,) 1.0 where any step is real, else 0.0."""
    return F.max(mask, axis=1)                                    # (B,)


def masked_mean(F, x, mask):
    """Mean of ``x`` (B, T, C) over real steps of ``mask`` (B, T); zero for an empty row."""
    m = F.expand_dims(mask, axis=2)                               # (B, T, 1)
    total = F.sum(F.broadcast_mul(x, m), axis=1)                  # (B, C)
    count = F.maximum(F.sum(mask, axis=1, keepdims=True), 1.0)    # (B, 1)
    return F.broadcast_div(total, count)                          # (B, C)


def downsample_mask(F, mask, factor):
    """Max-pool a (B, T) mask by ``factor`` (floor), matching a stride-``factor`` pooling."""
    if factor == 1:
        return mask
    # 4-D pooling: oneDNN's quantized pooling (INT8) only takes 4-D/5-D inputs
    m = F.reshape(mask, shape=(0, 1, -1, 1))                      # (B, 1, T, 1)
    m = F.Pooling(m, kernel=(factor, 1), stride=(factor, 1), pool_type="max")  # (B, 1, T//f, 1)
    return F.reshape(m, shape=(0, -1))                            # (B, T//f)


class MaskedPool(HybridBlock):
    """Pool a sequence (B, T, C) with mask (B, T) into (B, C).

    ``mode='mean'``: masked mean.  ``mode='attention'``: a learned score per step
    (Dense(1) on tanh(Dense(C))), masked softmax over steps, weighted sum; weights of padded
    steps are exactly 0 and an all-padding row gives exactly 0.
    """

    def __init__(self, units, mode="mean", prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        if mode not in ("mean", "attention"):
            raise ValueError(f"pooling must be 'mean' or 'attention', not {mode!r}")
        self._mode = mode
        if mode == "attention":
            with self.name_scope():
                self.hidden = nn.Dense(units, flatten=False, activation="tanh", prefix="hidden_")
                self.score = nn.Dense(1, flatten=False, prefix="score_")

    def hybrid_forward(self, F, x, mask):
        if self._mode == "mean":
            return masked_mean(F, x, mask)                        # (B, C)
        # 1. scores per step
        s = self.score(self.hidden(x))                            # (B, T, 1)
        s = F.reshape(s, shape=(0, -1))                           # (B, T)
        # 2. masked softmax; multiply by the mask so an all-padding row is exactly 0
        s = s + (1.0 - mask) * NEG_INF                            # (B, T)
        w = F.broadcast_mul(F.softmax(s, axis=-1), mask)          # (B, T)
        # 3. weighted sum
        w = F.expand_dims(w, axis=1)                              # (B, 1, T)
        out = F.batch_dot(w, x)                                   # (B, 1, C)
        return F.reshape(out, shape=(0, -1))                      # (B, C)


class PositionEmbedding(HybridBlock):
    """Learned position embedding added to (B, T, C), T <= max_len.

    A learned Parameter (not a constant) so INT8 quantization does not need an exclusion for
    it (unlike gluonnlp's sinusoidal ``_const``).  Sliced to the input length with slice_like.
    """

    def __init__(self, max_len, units, prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        with self.name_scope():
            self.weight = self.params.get("weight", shape=(1, max_len, units),
                                          init="normal")

    def hybrid_forward(self, F, x, weight):
        pos = F.slice_like(weight, x, axes=(1,))                   # (1, T, C)
        return F.broadcast_add(x, pos)                             # (B, T, C)
