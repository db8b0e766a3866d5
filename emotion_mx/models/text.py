"""Text encoders over token ids (B, L) (float32 ids, as MXNet's Embedding takes them).

``TextTransformer``: Embedding (optionally initialised from a pretrained matrix) ->
Dense(units) when embed_dim != units -> learned positions -> pre-LN transformer layers
(self-attention with the key padding mask).  ``TextBiLSTM``: Embedding -> bidirectional LSTM
(units/2 per direction).

Padding: ids are multiplied by the mask (padding -> id 0) and embeddings by the mask (padding
-> zero vector), so raw values at padded positions never matter.  Returns (h (B, L, units),
mask (B, L)).

Quantization note: the position embedding is a learned Parameter named ``*pos_embed_weight``
(no gluonnlp ``_const``); the LSTM's RNN op is named ``*lstm_rnn0`` (exclude RNN ops from
INT8, field notes).
"""
import mxnet as mx
from mxnet.gluon import HybridBlock, nn, rnn

from .attention import TransformerStack
from .common import PositionEmbedding

__all__ = ["TextTransformer", "TextBiLSTM", "embedding_initializer"]


def embedding_initializer(embed_init):
    """None -> default; an mx.init.Initializer as is; an array (V, D) -> Constant(array)."""
    if embed_init is None or isinstance(embed_init, (str, mx.init.Initializer)):
        return embed_init
    return mx.init.Constant(mx.nd.array(embed_init, dtype="float32"))


class _TextEmbedding(HybridBlock):
    def __init__(self, vocab_size, embed_dim, embed_init=None, prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        with self.name_scope():
            self.embed = nn.Embedding(vocab_size, embed_dim, prefix="embed_",
                                      weight_initializer=embedding_initializer(embed_init))

    def hybrid_forward(self, F, ids, mask):
        ids = F.broadcast_mul(ids, mask)                                     # (B, L) padding -> id 0
        e = self.embed(ids)                                           # (B, L, E)
        return F.broadcast_mul(e, F.expand_dims(mask, axis=2))       # (B, L, E)


class TextTransformer(HybridBlock):
    def __init__(self, vocab_size=5000, max_tokens=32, embed_dim=64, units=64, num_layers=2,
                 num_heads=4, ffn_units=128, dropout=0.1, embed_init=None,
                 prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        self.out_frames = max_tokens
        self.units = units
        with self.name_scope():
            self.embedding = _TextEmbedding(vocab_size, embed_dim, embed_init, prefix="")
            self.proj = (nn.Dense(units, flatten=False, prefix="proj_")
                         if embed_dim != units else None)
            self.pos = PositionEmbedding(max_tokens, units, prefix="pos_embed_")
            self.dropout = nn.Dropout(dropout) if dropout else None
            self.transformer = TransformerStack(num_layers, units, num_heads, ffn_units,
                                                dropout=dropout, prefix="transformer_")

    def hybrid_forward(self, F, ids, mask):
        # 1. embed (padding -> zero vectors)
        x = self.embedding(ids, mask)                                 # (B, L, E)
        if self.proj is not None:
            x = self.proj(x)                                          # (B, L, units)
        # 2. positions
        x = self.pos(x)                                               # (B, L, units)
        if self.dropout is not None:
            x = self.dropout(x)
        # 3. self-attention layers with key padding mask
        x = self.transformer(x, x, mask)                              # (B, L, units)
        return x, mask


class TextBiLSTM(HybridBlock):
    def __init__(self, vocab_size=5000, max_tokens=32, embed_dim=64, units=64, num_layers=1,
                 dropout=0.1, embed_init=None, prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        self.out_frames = max_tokens
        self.units = units
        with self.name_scope():
            self.embedding = _TextEmbedding(vocab_size, embed_dim, embed_init, prefix="")
            self.lstm = rnn.LSTM(max(units // 2, 1), num_layers=num_layers, bidirectional=True,
                                 layout="NTC", dropout=dropout if num_layers > 1 else 0.0,
                                 prefix="lstm_")
            self.proj = (nn.Dense(units, flatten=False, prefix="proj_")
                         if 2 * max(units // 2, 1) != units else None)

    def hybrid_forward(self, F, ids, mask):
        # 1. embed (padding -> zero vectors)
        x = self.embedding(ids, mask)                                 # (B, L, E)
        # 2. BiLSTM over the padded sequence (padding is zero input; pooled out later)
        x = self.lstm(x)                                              # (B, L, units)
        if self.proj is not None:
            x = self.proj(x)
        return x, mask
