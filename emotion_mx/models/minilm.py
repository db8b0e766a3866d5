"""MiniLM / BERT text encoder (all-MiniLM-L6-v2) as a Gluon HybridBlock, weights from safetensors.

Tokenisation is the checkpoint's own WordPiece (``tokenizer.json`` read by the ``tokenizers``
library, :class:`MiniLMTokenizer`); the block takes token ids ``(B, L)`` and the attention mask
``(B, L)`` (1 = real token).

Stages: (1) word + position + token-type embeddings, LayerNorm (eps 1e-12); (2) N post-LayerNorm
BERT layers (separate Q/K/V projections, exact GELU).  Returns every layer's token states
``(B, N + 1, L, C)`` (index 0: the embeddings) and the mask; :func:`mean_pool` gives the
sentence-transformers sentence embedding (masked mean of the last layer, then L2-normalised).
"""
from mxnet.gluon import HybridBlock, nn

from .common import NEG_INF, masked_mean

__all__ = ["MiniLMEncoder", "MiniLMTokenizer", "MINILM_PRESETS", "minilm_weights", "mean_pool"]

MINILM_PRESETS = {
    "minilm_l6": dict(num_layers=6, units=384, num_heads=12, ffn_units=1536, vocab_size=30522,
                      max_positions=512, type_vocab_size=2),
}
MAX_SEQ_LENGTH = 256   # sentence-transformers' max_seq_length for all-MiniLM-L6-v2


class BertLayer(HybridBlock):
    """Post-LayerNorm BERT layer: self-attention + residual + LN, GELU FFN + residual + LN."""

    def __init__(self, units, num_heads, ffn_units, prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        self._heads = num_heads
        self._scale = float((units // num_heads) ** -0.5)
        with self.name_scope():
            self.query = nn.Dense(units, flatten=False, in_units=units, prefix="query_")
            self.key = nn.Dense(units, flatten=False, in_units=units, prefix="key_")
            self.value = nn.Dense(units, flatten=False, in_units=units, prefix="value_")
            self.proj = nn.Dense(units, flatten=False, in_units=units, prefix="proj_")
            self.attn_norm = nn.LayerNorm(epsilon=1e-12, in_channels=units, prefix="attn_norm_")
            self.ffn1 = nn.Dense(ffn_units, flatten=False, in_units=units, prefix="ffn1_")
            self.ffn2 = nn.Dense(units, flatten=False, in_units=ffn_units, prefix="ffn2_")
            self.ffn_norm = nn.LayerNorm(epsilon=1e-12, in_channels=units, prefix="ffn_norm_")

    def _heads_first(self, F, x):
        x = F.reshape(x, shape=(0, 0, self._heads, -1))                        # (B, L, H, D)
        return F.reshape(F.transpose(x, axes=(0, 2, 1, 3)), shape=(-3, 0, 0))  # (B*H, L, D)

    def hybrid_forward(self, F, x, key_bias):
        # x (B, L, C); key_bias (B, 1, 1, L)
        H = self._heads
        q = self._heads_first(F, self.query(x) * self._scale)
        k = self._heads_first(F, self.key(x))
        v = self._heads_first(F, self.value(x))
        scores = F.reshape(F.batch_dot(q, k, transpose_b=True), shape=(-4, -1, H, 0, 0))  # (B, H, L, L)
        att = F.softmax(F.broadcast_add(scores, key_bias), axis=-1)
        ctx = F.batch_dot(F.reshape(att, shape=(-3, 0, 0)), v)                 # (B*H, L, D)
        ctx = F.reshape(F.transpose(F.reshape(ctx, shape=(-4, -1, H, 0, 0)), axes=(0, 2, 1, 3)),
                        shape=(0, 0, -3))                                      # (B, L, C)
        x = self.attn_norm(x + self.proj(ctx))
        h = F.LeakyReLU(self.ffn1(x), act_type="gelu")                         # (B, L, 4C)
        return self.ffn_norm(x + self.ffn2(h))                                 # (B, L, C)


class MiniLMEncoder(HybridBlock):
    """BERT encoder: ``(ids (B, L), mask (B, L)) -> (states (B, N+1, L, C), mask (B, L))``."""

    def __init__(self, num_layers=6, units=384, num_heads=12, ffn_units=1536, vocab_size=30522,
                 max_positions=512, type_vocab_size=2, prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        self.num_layers, self.units = num_layers, units
        with self.name_scope():
            self.word_embed = nn.Embedding(vocab_size, units, prefix="word_embed_")
            self.pos_embed = nn.Embedding(max_positions, units, prefix="pos_embed_")
            self.type_embed = nn.Embedding(type_vocab_size, units, prefix="type_embed_")
            self.embed_norm = nn.LayerNorm(epsilon=1e-12, in_channels=units, prefix="embed_norm_")
            self.layers = nn.HybridSequential(prefix="layers_")
            with self.layers.name_scope():
                for i in range(num_layers):
                    self.layers.add(BertLayer(units, num_heads, ffn_units, prefix=f"layer{i}_"))

    def hybrid_forward(self, F, ids, mask):
        # 1. embeddings (single segment: token type 0)
        positions = F.contrib.arange_like(ids, axis=1)                         # (L,)
        x = F.broadcast_add(self.word_embed(ids), F.expand_dims(self.pos_embed(positions), axis=0))
        x = F.broadcast_add(x, self.type_embed(F.zeros_like(F.slice_axis(ids, axis=1, begin=0, end=1))))
        x = self.embed_norm(x)                                                 # (B, L, C)
        key_bias = F.reshape((1.0 - mask) * NEG_INF, shape=(0, 1, 1, -1))      # (B, 1, 1, L)
        # 2. BERT layers, every hidden state kept
        states = [x]
        for layer in self.layers:
            x = layer(x, key_bias)
            states.append(x)
        return F.stack(*states, axis=1), mask                                  # (B, N+1, L, C), (B, L)


def mean_pool(F, states, mask, normalize=True):
    """Sentence embedding of a ``(B, L, C)`` layer: masked mean, L2-normalised (sentence-transformers)."""
    pooled = masked_mean(F, states, mask)                                      # (B, C)
    return F.L2Normalization(pooled, mode="instance", eps=1e-12) if normalize else pooled


class MiniLMTokenizer:
    """The checkpoint's WordPiece tokenizer (``tokenizers``) → padded ids and mask arrays."""

    def __init__(self, path, max_length=MAX_SEQ_LENGTH):
        from ..errors import EmotionMXError
        from ..optional import require
        Tokenizer = require("tokenizers", "pretrained", "the MiniLM tokenizer").Tokenizer
        try:
            self.tok = Tokenizer.from_file(str(path))
        except Exception as e:
            raise EmotionMXError(f"{path}: not a readable tokenizer.json ({str(e).splitlines()[0]})") from None
        self.tok.no_padding()
        self.tok.enable_truncation(max_length=max_length)
        self.max_length = max_length

    def __call__(self, texts, length=None):
        """``(ids (N, L) float32, mask (N, L) float32)``; ``L`` = ``length`` or the longest text."""
        import numpy as np
        encs = self.tok.encode_batch([str(t) for t in texts])
        L = length or max(len(e.ids) for e in encs)
        ids, mask = np.zeros((len(encs), L), np.float32), np.zeros((len(encs), L), np.float32)
        for i, e in enumerate(encs):
            n = min(len(e.ids), L)
            ids[i, :n], mask[i, :n] = e.ids[:n], 1.0
        return ids, mask


def minilm_weights(tensors, num_layers, units, num_heads, ffn_units, vocab_size, max_positions,
                   type_vocab_size, where):
    """Map BERT safetensors names (HF ``BertModel``) to this block's parameter suffixes."""
    from ..errors import EmotionMXError
    # sentence-transformers checkpoints may or may not prefix names with "bert." / "0.auto_model."
    def find(name):
        for p in ("", "bert.", "0.auto_model.", "model."):
            if p + name in tensors:
                return tensors[p + name]
        return None

    def get(name, shape):
        arr = find(name)
        if arr is None:
            raise EmotionMXError(f"{where}: tensor {name} missing; expected a BERT encoder with "
                                 f"{num_layers} layers of width {units}")
        if tuple(arr.shape) != tuple(shape):
            raise EmotionMXError(f"{where}: tensor {name} has shape {tuple(arr.shape)}, expected "
                                 f"{tuple(shape)} (BERT, {num_layers} layers, width {units})")
        return arr.astype("float32")

    if find(f"encoder.layer.{num_layers}.attention.self.query.weight") is not None:
        raise EmotionMXError(f"{where}: encoder has more than {num_layers} layers; expected exactly {num_layers}")
    out = {
        "word_embed_weight": get("embeddings.word_embeddings.weight", (vocab_size, units)),
        "pos_embed_weight": get("embeddings.position_embeddings.weight", (max_positions, units)),
        "type_embed_weight": get("embeddings.token_type_embeddings.weight", (type_vocab_size, units)),
        "embed_norm_gamma": get("embeddings.LayerNorm.weight", (units,)),
        "embed_norm_beta": get("embeddings.LayerNorm.bias", (units,)),
    }
    for i in range(num_layers):
        s, d = f"encoder.layer.{i}.", f"layers_layer{i}_"
        for src, dst, shape in [("attention.self.query", "query", (units, units)),
                                ("attention.self.key", "key", (units, units)),
                                ("attention.self.value", "value", (units, units)),
                                ("attention.output.dense", "proj", (units, units)),
                                ("intermediate.dense", "ffn1", (ffn_units, units)),
                                ("output.dense", "ffn2", (units, ffn_units))]:
            out[f"{d}{dst}_weight"] = get(f"{s}{src}.weight", shape)
            out[f"{d}{dst}_bias"] = get(f"{s}{src}.bias", shape[:1])
        for src, dst in [("attention.output.LayerNorm", "attn_norm"), ("output.LayerNorm", "ffn_norm")]:
            out[f"{d}{dst}_gamma"] = get(f"{s}{src}.weight", (units,))
            out[f"{d}{dst}_beta"] = get(f"{s}{src}.bias", (units,))
    return out
