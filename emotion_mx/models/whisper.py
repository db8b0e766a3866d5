"""Whisper audio encoder (Radford et al. 2022) as a Gluon HybridBlock, weights from CTranslate2.

Input: the Whisper log-mel front end (:func:`emotion_mx.features.whisper_frontend.whisper_logmel`)
as ``(B, T, 80)`` with a frame mask ``(B, T)`` (the project's audio contract), 100 frames per
second.  Inputs shorter than Whisper's 30 s window run unpadded: the position table is sliced to
the number of encoder frames in-graph (``slice_like``), so one hybridized graph serves any
length up to 3000 mel frames.

Stages: (1) conv1d k3 + GELU, conv1d k3 stride 2 + GELU (T' = ceil(T / 2)); (2) add sinusoidal
positions; (3) N pre-LayerNorm transformer layers (eps 1e-5, exact GELU); (4) final LayerNorm on
the last layer.  Returns every layer's hidden states ``(B, N + 1, T', C)`` (index 0: the
embeddings; index N: the final normalised output, which is what ``ctranslate2`` returns) and
the encoder-frame mask ``(B, T')``: a head then takes a learned softmax weighting over layers
(SUPERB) or one chosen layer.  Padded frames are zeroed before the convolutions and excluded
from attention as keys: in a padded batch every item's real frames equal its unpadded run.
"""
import numpy as np
from mxnet.gluon import HybridBlock, nn

from .common import NEG_INF

__all__ = ["WhisperEncoder", "WHISPER_PRESETS", "whisper_encoder_weights", "interleave_qkv"]

# preset -> architecture (data, checked against the checkpoint when loading)
WHISPER_PRESETS = {
    "whisper_tiny_en": dict(num_layers=4, units=384, num_heads=6, ffn_units=1536),
    "whisper_base": dict(num_layers=6, units=512, num_heads=8, ffn_units=2048),
}
N_MELS = 80
MAX_POSITIONS = 1500   # 30 s of encoder frames
ATTENTION = ("batch_dot", "interleaved")


class WhisperLayer(HybridBlock):
    """Pre-LayerNorm transformer layer with a fused QKV projection (CTranslate2's layout).

    ``attention``: ``"batch_dot"`` (QKV rows ``[Q; K; V]`` as in the checkpoint; exports to ONNX
    everywhere) or ``"interleaved"`` (QKV rows per head ``[Q_h; K_h; V_h]``, see
    :func:`interleave_qkv`; time-major ``_contrib_interleaved_matmul_selfatt_qk/valatt``, which
    oneDNN fuses into ``_sg_mkldnn_selfatt_qk/valatt``).  Both give the same outputs."""

    def __init__(self, units, num_heads, ffn_units, attention="batch_dot", prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        if attention not in ATTENTION:
            raise ValueError(f"attention must be one of {ATTENTION}")
        self._heads, self._attention = num_heads, attention
        self._scale = float((units // num_heads) ** -0.5)
        with self.name_scope():
            self.attn_norm = nn.LayerNorm(epsilon=1e-5, in_channels=units, prefix="attn_norm_")
            self.qkv = nn.Dense(3 * units, flatten=False, in_units=units, prefix="qkv_")
            self.proj = nn.Dense(units, flatten=False, in_units=units, prefix="proj_")
            self.ffn_norm = nn.LayerNorm(epsilon=1e-5, in_channels=units, prefix="ffn_norm_")
            self.ffn1 = nn.Dense(ffn_units, flatten=False, in_units=units, prefix="ffn1_")
            self.ffn2 = nn.Dense(units, flatten=False, in_units=ffn_units, prefix="ffn2_")

    def _batch_dot_attention(self, F, x, key_bias):
        H = self._heads
        qkv = self.qkv(self.attn_norm(x))                                      # (B, T, 3C)
        qkv = F.transpose(F.reshape(qkv, shape=(0, 0, 3, H, -1)), axes=(2, 0, 3, 1, 4))  # (3, B, H, T, D)
        q, k, v = F.split(qkv, num_outputs=3, axis=0, squeeze_axis=True)      # (B, H, T, D) each
        q = F.reshape(q * self._scale, shape=(-3, 0, 0))                       # (B*H, T, D)
        k = F.reshape(k, shape=(-3, 0, 0))
        v = F.reshape(v, shape=(-3, 0, 0))
        scores = F.reshape(F.batch_dot(q, k, transpose_b=True), shape=(-4, -1, H, 0, 0))  # (B, H, T, T)
        att = F.softmax(F.broadcast_add(scores, key_bias), axis=-1)            # (B, H, T, T)
        ctx = F.batch_dot(F.reshape(att, shape=(-3, 0, 0)), v)                 # (B*H, T, D)
        ctx = F.reshape(F.transpose(F.reshape(ctx, shape=(-4, -1, H, 0, 0)), axes=(0, 2, 1, 3)),
                        shape=(0, 0, -3))                                      # (B, T, C)
        return self.proj(ctx)                                                  # (B, T, C)

    def _interleaved_attention(self, F, x, key_bias):
        H = self._heads
        qkv = self.qkv(self.attn_norm(F.transpose(x, axes=(1, 0, 2))))        # (T, B, 3C), per head q|k|v
        scores = F.contrib.interleaved_matmul_selfatt_qk(qkv, heads=H)        # (B*H, T, T), scaled
        scores = F.reshape(scores, shape=(-4, -1, H, 0, 0))                    # (B, H, T, T)
        att = F.softmax(F.broadcast_add(scores, key_bias), axis=-1)            # (B, H, T, T)
        ctx = F.contrib.interleaved_matmul_selfatt_valatt(qkv, F.reshape(att, shape=(-3, 0, 0)),
                                                          heads=H)             # (T, B, C)
        return F.transpose(self.proj(ctx), axes=(1, 0, 2))                     # (B, T, C)

    def hybrid_forward(self, F, x, key_bias):
        # x (B, T, C); key_bias (B, 1, 1, T): 0 for real frames, NEG_INF for padding
        if self._attention == "interleaved":
            x = x + self._interleaved_attention(F, x, key_bias)
        else:
            x = x + self._batch_dot_attention(F, x, key_bias)
        h = F.LeakyReLU(self.ffn1(self.ffn_norm(x)), act_type="gelu")          # (B, T, 4C)
        return x + self.ffn2(h)                                                # (B, T, C)


def interleave_qkv(qkv, num_heads, inverse=False):
    """QKV weight ``(3C, C)`` or bias ``(3C,)`` rows from ``[Q; K; V]`` to per-head
    ``[Q_1; K_1; V_1; Q_2; ...]`` (``inverse``: back); numpy or NDArray."""
    n = qkv.shape[0] // 3
    shape = (3, num_heads, n // num_heads) if not inverse else (num_heads, 3, n // num_heads)
    order = np.arange(3 * n).reshape(shape).transpose(1, 0, 2).reshape(-1)
    if isinstance(qkv, np.ndarray):
        return qkv[order]
    import mxnet as mx
    return mx.nd.take(qkv, mx.nd.array(order, ctx=qkv.context, dtype="int64"))


class WhisperEncoder(HybridBlock):
    """Whisper encoder: ``(mel (B, T, 80), mask (B, T)) -> (states (B, N+1, T', C), mask' (B, T'))``."""

    def __init__(self, num_layers=4, units=384, num_heads=6, ffn_units=1536, n_mels=N_MELS,
                 max_positions=MAX_POSITIONS, attention="batch_dot", prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        self.num_layers, self.units, self.num_heads, self.attention = num_layers, units, num_heads, attention
        with self.name_scope():
            self.conv1 = nn.Conv1D(units, 3, padding=1, in_channels=n_mels, prefix="conv1_")
            self.conv2 = nn.Conv1D(units, 3, strides=2, padding=1, in_channels=units, prefix="conv2_")
            self.position = self.params.get("position", shape=(max_positions, units),
                                            init="zeros", grad_req="null")
            self.layers = nn.HybridSequential(prefix="layers_")
            with self.layers.name_scope():
                for i in range(num_layers):
                    self.layers.add(WhisperLayer(units, num_heads, ffn_units, attention=attention,
                                                 prefix=f"layer{i}_"))
            self.final_norm = nn.LayerNorm(epsilon=1e-5, in_channels=units, prefix="final_norm_")

    def hybrid_forward(self, F, mel, mask, position):
        # 1. convolutional stem over (B, 80, T)
        # padded frames are zeroed before each conv, so a padded batch gives every item exactly
        # what it gets alone (the convs zero-pad at the edges too)
        keep = F.expand_dims(mask, axis=1)                                     # (B, 1, T)
        x = F.broadcast_mul(F.transpose(mel, axes=(0, 2, 1)), keep)            # (B, 80, T)
        x = F.broadcast_mul(F.LeakyReLU(self.conv1(x), act_type="gelu"), keep)  # (B, C, T)
        x = F.LeakyReLU(self.conv2(x), act_type="gelu")                        # (B, C, T')
        x = F.transpose(x, axes=(0, 2, 1))                                     # (B, T', C)
        # 2. positions sliced to T' (no padding to 30 s)
        x = F.broadcast_add(x, F.slice_like(F.expand_dims(position, axis=0), x, axes=(1,)))
        m = F.slice(mask, begin=(None, 0), end=(None, None), step=(None, 2))   # (B, T')
        key_bias = F.reshape((1.0 - m) * NEG_INF, shape=(0, 1, 1, -1))         # (B, 1, 1, T')
        # 3. transformer layers, every hidden state kept
        states = [x]
        for i, layer in enumerate(self.layers):
            x = layer(x, key_bias)
            states.append(self.final_norm(x) if i == self.num_layers - 1 else x)
        return F.stack(*states, axis=1), m                                     # (B, N+1, T', C), (B, T')


def with_attention(encoder, attention):
    """A copy of ``encoder`` (same prefix, so the same parameter names) whose layers compute
    attention the other way (:data:`ATTENTION`), its QKV rows reordered to match: outputs equal."""
    import mxnet as mx
    if attention not in ATTENTION:
        raise ValueError(f"attention must be one of {ATTENTION}")
    out = WhisperEncoder(num_layers=encoder.num_layers, units=encoder.units, num_heads=encoder.num_heads,
                         ffn_units=encoder.layers[0].ffn1._units, n_mels=encoder.conv1._in_channels,
                         max_positions=encoder.position.shape[0], attention=attention, prefix=encoder.prefix)
    out.initialize(ctx=mx.cpu())
    src = encoder.collect_params()
    for name, p in out.collect_params().items():
        value = src[name].data()
        if "_qkv_" in name and attention != encoder.attention:
            value = interleave_qkv(value, encoder.num_heads, inverse=attention == "batch_dot")
        p.set_data(value)
    return out


def whisper_encoder_weights(variables, num_layers, units, num_heads, ffn_units, where):
    """Map CTranslate2 ``encoder/...`` variables to this block's parameter suffixes.

    Returns ``{suffix: ndarray}`` (suffix = parameter name without the block prefix); raises
    ValueError naming the first missing variable or wrong shape (the caller adds the file)."""
    from ..errors import EmotionMXError

    def get(name, shape):
        if name not in variables:
            raise EmotionMXError(f"{where}: variable {name} missing; expected a Whisper encoder "
                                 f"with {num_layers} layers of width {units}")
        arr = variables[name]
        if tuple(arr.shape) != tuple(shape):
            raise EmotionMXError(f"{where}: variable {name} has shape {tuple(arr.shape)}, expected "
                                 f"{tuple(shape)} (Whisper encoder, {num_layers} layers, width {units})")
        return arr

    e = "encoder/"
    heads = variables.get(e + "num_heads")
    if heads is not None and int(heads) != num_heads:
        raise EmotionMXError(f"{where}: encoder has {int(heads)} attention heads, expected {num_heads}")
    if e + f"layer_{num_layers}/ffn/linear_0/weight" in variables:
        raise EmotionMXError(f"{where}: encoder has more than {num_layers} layers; expected "
                             f"exactly {num_layers} (another Whisper size?)")
    out = {
        "conv1_weight": get(e + "conv1/weight", (units, N_MELS, 3)),
        "conv1_bias": get(e + "conv1/bias", (units,)),
        "conv2_weight": get(e + "conv2/weight", (units, units, 3)),
        "conv2_bias": get(e + "conv2/bias", (units,)),
        "position": get(e + "position_encodings/encodings", (MAX_POSITIONS, units)),
        "final_norm_gamma": get(e + "layer_norm/gamma", (units,)),
        "final_norm_beta": get(e + "layer_norm/beta", (units,)),
    }
    for i in range(num_layers):
        src, dst = f"{e}layer_{i}/", f"layers_layer{i}_"
        pairs = [("self_attention/layer_norm/gamma", "attn_norm_gamma", (units,)),
                 ("self_attention/layer_norm/beta", "attn_norm_beta", (units,)),
                 ("self_attention/linear_0/weight", "qkv_weight", (3 * units, units)),
                 ("self_attention/linear_0/bias", "qkv_bias", (3 * units,)),
                 ("self_attention/linear_1/weight", "proj_weight", (units, units)),
                 ("self_attention/linear_1/bias", "proj_bias", (units,)),
                 ("ffn/layer_norm/gamma", "ffn_norm_gamma", (units,)),
                 ("ffn/layer_norm/beta", "ffn_norm_beta", (units,)),
                 ("ffn/linear_0/weight", "ffn1_weight", (ffn_units, units)),
                 ("ffn/linear_0/bias", "ffn1_bias", (ffn_units,)),
                 ("ffn/linear_1/weight", "ffn2_weight", (units, ffn_units)),
                 ("ffn/linear_1/bias", "ffn2_bias", (units,))]
        for s, d, shape in pairs:
            out[dst + d] = get(src + s, shape)
    return out
