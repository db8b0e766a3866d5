"""Multi-head attention with ``F.batch_dot`` and the transformer layers built on it.

Why batch_dot: ``F.contrib.interleaved_matmul_*`` do not export to ONNX (field notes); a
4-D ``batch_dot`` (B, H, Tq, D) x (B, H, Tk, D)^T does, and needs no sequence length at
construction.  Head split/merge uses only reshape codes 0 and -1 (ONNX-safe).

Masking: ``key_mask`` (B, Tk) float, 1 = real key.  Masked scores get -1e9 before the softmax
(their weight underflows to exactly 0) and the weights are then multiplied by the mask, so a
query whose keys are all masked (missing modality) gets an attention output of exactly 0
(plus the output projection bias), never NaN, and padded keys' values never reach the output.
"""
import math

from mxnet.gluon import HybridBlock, nn

from .common import NEG_INF

__all__ = ["MultiHeadAttention", "PositionwiseFFN", "TransformerLayer", "TransformerStack"]


class MultiHeadAttention(HybridBlock):
    """Scaled dot-product multi-head attention (Vaswani et al. 2017).

    Inputs: query (B, Tq, Cq), key (B, Tk, Ck), value (B, Tk, Ck), key_mask (B, Tk).
    Output: (B, Tq, units).
    """

    def __init__(self, units, num_heads, dropout=0.0, prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        if units % num_heads:
            raise ValueError(f"units={units} is not divisible by num_heads={num_heads}")
        self._units = units
        self._heads = num_heads
        self._head_dim = units // num_heads
        with self.name_scope():
            self.proj_query = nn.Dense(units, flatten=False, prefix="query_")
            self.proj_key = nn.Dense(units, flatten=False, prefix="key_")
            self.proj_value = nn.Dense(units, flatten=False, prefix="value_")
            self.proj_out = nn.Dense(units, flatten=False, prefix="out_")
            self.dropout = nn.Dropout(dropout) if dropout else None

    def _split_heads(self, F, x):
        x = F.reshape(x, shape=(0, 0, self._heads, self._head_dim))   # (B, T, H, D)
        return F.transpose(x, axes=(0, 2, 1, 3))                      # (B, H, T, D)

    def hybrid_forward(self, F, query, key, value, key_mask):
        # 1. project and split heads
        q = self._split_heads(F, self.proj_query(query))              # (B, H, Tq, D)
        k = self._split_heads(F, self.proj_key(key))                  # (B, H, Tk, D)
        v = self._split_heads(F, self.proj_value(value))              # (B, H, Tk, D)
        q = q * (1.0 / math.sqrt(self._head_dim))
        # 2. scores
        scores = F.batch_dot(q, k, transpose_b=True)                  # (B, H, Tq, Tk)
        # 3. key padding mask: -1e9 before softmax, exact zeros after
        m = F.reshape(key_mask, shape=(0, 1, 1, -1))                  # (B, 1, 1, Tk)
        scores = F.broadcast_add(scores, (1.0 - m) * NEG_INF)         # (B, H, Tq, Tk)
        attn = F.broadcast_mul(F.softmax(scores, axis=-1), m)         # (B, H, Tq, Tk)
        if self.dropout is not None:
            attn = self.dropout(attn)
        # 4. weighted values, merge heads, output projection
        out = F.batch_dot(attn, v)                                    # (B, H, Tq, D)
        out = F.transpose(out, axes=(0, 2, 1, 3))                     # (B, Tq, H, D)
        out = F.reshape(out, shape=(0, 0, self._units))               # (B, Tq, C)
        return self.proj_out(out)                                     # (B, Tq, C)


class PositionwiseFFN(HybridBlock):
    """Dense(ffn_units, relu) -> dropout -> Dense(units), applied per step on (B, T, C)."""

    def __init__(self, units, ffn_units, dropout=0.0, prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        with self.name_scope():
            self.hidden = nn.Dense(ffn_units, flatten=False, activation="relu", prefix="hidden_")
            self.out = nn.Dense(units, flatten=False, prefix="out_")
            self.dropout = nn.Dropout(dropout) if dropout else None

    def hybrid_forward(self, F, x):
        h = self.hidden(x)                                            # (B, T, ffn)
        if self.dropout is not None:
            h = self.dropout(h)
        return self.out(h)                                            # (B, T, C)


class TransformerLayer(HybridBlock):
    """Pre-LayerNorm transformer layer (as in MulT): attention + FFN, each with a residual.

    ``cross=True``: queries come from ``x`` and keys/values from ``kv`` (another modality) with
    their own LayerNorm; ``cross=False``: self-attention (call with kv=x, kv_mask=mask).
    Inputs: x (B, Tq, C), kv (B, Tk, C), kv_mask (B, Tk).  Output (B, Tq, C).
    """

    def __init__(self, units, num_heads, ffn_units, dropout=0.0, cross=False,
                 prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        self._cross = cross
        with self.name_scope():
            self.norm_query = nn.LayerNorm(prefix="norm_query_")
            self.norm_kv = nn.LayerNorm(prefix="norm_kv_") if cross else None
            self.attention = MultiHeadAttention(units, num_heads, dropout=dropout, prefix="attn_")
            self.norm_ffn = nn.LayerNorm(prefix="norm_ffn_")
            self.ffn = PositionwiseFFN(units, ffn_units, dropout=dropout, prefix="ffn_")
            self.dropout = nn.Dropout(dropout) if dropout else None

    def _drop(self, x):
        return self.dropout(x) if self.dropout is not None else x

    def hybrid_forward(self, F, x, kv, kv_mask):
        # 1. attention sub-layer
        q = self.norm_query(x)                                        # (B, Tq, C)
        kv = self.norm_kv(kv) if self._cross else q                   # (B, Tk, C)
        x = x + self._drop(self.attention(q, kv, kv, kv_mask))        # (B, Tq, C)
        # 2. position-wise FFN sub-layer
        x = x + self._drop(self.ffn(self.norm_ffn(x)))                # (B, Tq, C)
        return x


class TransformerStack(HybridBlock):
    """``num_layers`` TransformerLayers followed by a final LayerNorm.

    Self-attention: ``stack(x, x, mask)``; cross-modal: ``stack(x_target, x_source, source_mask)``
    (the source sequence is attended by every layer, as in MulT's crossmodal transformer).
    """

    def __init__(self, num_layers, units, num_heads, ffn_units, dropout=0.0, cross=False,
                 prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        with self.name_scope():
            self.layers = nn.HybridSequential(prefix="")
            for i in range(num_layers):
                self.layers.add(TransformerLayer(units, num_heads, ffn_units, dropout=dropout,
                                                 cross=cross, prefix=f"layer{i}_"))
            self.norm = nn.LayerNorm(prefix="norm_")

    def hybrid_forward(self, F, x, kv, kv_mask):
        for layer in self.layers:
            x = layer(x, kv, kv_mask)                                 # (B, Tq, C)
        return self.norm(x)                                           # (B, Tq, C)
