"""Audio encoders over (B, T, F) frame features (log-mel [+ prosody]).

``AudioCNN``: a stack of [Conv2D 3x3 + BatchNorm + ReLU + MaxPool 2x2] on (B, 1, T, F), the
frequency axis folded into channels, then Dense(units) per frame; optional transformer layers.
``AudioCRNN``: the same CNN followed by a bidirectional LSTM (units/2 per direction).  LSTM
rather than GRU because mxnet.onnx exports a bidirectional LSTM but not a bidirectional GRU.

Both return ``(h (B, T', units), mask' (B, T'))`` with T' = T // 2**len(channels): the mask is
max-pooled by the same factor.  Padded input frames are zeroed first (``x * mask``) so their
raw values never reach the output.
"""
from mxnet.gluon import HybridBlock, nn, rnn

from .attention import TransformerStack
from .common import PositionEmbedding, downsample_mask

__all__ = ["AudioCNN", "AudioCRNN"]


class _ConvBlock(HybridBlock):
    """Conv2D 3x3 + BatchNorm + ReLU + MaxPool 2x2 (oneDNN fuses Conv+BN+ReLU for INT8)."""

    def __init__(self, channels, prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        with self.name_scope():
            self.conv = nn.Conv2D(channels, kernel_size=3, padding=1, use_bias=False, prefix="conv_")
            self.bn = nn.BatchNorm(prefix="bn_")
            self.pool = nn.MaxPool2D(pool_size=2, strides=2, prefix="pool_")

    def hybrid_forward(self, F, x):
        # Activation(relu), not F.relu: oneDNN fuses only the former into the convolution
        return self.pool(F.Activation(self.bn(self.conv(x)), act_type="relu"))   # (B, C, T/2, F/2)


class AudioCNN(HybridBlock):
    """CNN audio encoder; ``num_layers`` > 0 adds transformer layers over the CNN frames."""

    def __init__(self, audio_dim=64, audio_frames=300, channels=(16, 32), units=64,
                 num_layers=0, num_heads=4, ffn_units=128, dropout=0.1, rnn_units=0,
                 prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        self._factor = 2 ** len(channels)
        if audio_dim < self._factor or audio_frames < self._factor:
            raise ValueError(f"audio_dim={audio_dim} and audio_frames={audio_frames} must be >= "
                             f"{self._factor} for {len(channels)} conv blocks")
        self.out_frames = audio_frames // self._factor
        self.units = units
        with self.name_scope():
            self.convs = nn.HybridSequential(prefix="cnn_")
            with self.convs.name_scope():
                for i, c in enumerate(channels):
                    self.convs.add(_ConvBlock(c, prefix=f"block{i}_"))
            self.proj = nn.Dense(units, flatten=False, activation="relu", prefix="proj_")
            self.rnn = (rnn.LSTM(rnn_units, bidirectional=True, layout="NTC", prefix="lstm_")
                        if rnn_units else None)
            self.rnn_proj = (nn.Dense(units, flatten=False, prefix="lstm_proj_")
                             if rnn_units and 2 * rnn_units != units else None)
            self.pos = (PositionEmbedding(self.out_frames, units, prefix="pos_embed_")
                        if num_layers else None)
            self.transformer = (TransformerStack(num_layers, units, num_heads, ffn_units,
                                                 dropout=dropout, prefix="transformer_")
                                if num_layers else None)

    def hybrid_forward(self, F, x, mask):
        # 1. zero padded frames, add a channel axis
        x = F.broadcast_mul(x, F.expand_dims(mask, axis=2))          # (B, T, F)
        x = F.expand_dims(x, axis=1)                                  # (B, 1, T, F)
        # 2. conv blocks
        x = self.convs(x)                                             # (B, C, T', F')
        # 3. fold frequency into channels, project per frame
        x = F.transpose(x, axes=(0, 2, 1, 3))                         # (B, T', C, F')
        x = F.reshape(x, shape=(0, 0, -1))                            # (B, T', C*F')
        x = self.proj(x)                                              # (B, T', units)
        mask = downsample_mask(F, mask, self._factor)                 # (B, T')
        # 4. optional recurrent layer (CRNN)
        if self.rnn is not None:
            x = self.rnn(x)                                           # (B, T', 2*rnn_units)
            if self.rnn_proj is not None:
                x = self.rnn_proj(x)                                  # (B, T', units)
        # 5. optional transformer layers
        if self.transformer is not None:
            x = self.pos(x)                                           # (B, T', units)
            x = self.transformer(x, x, mask)                          # (B, T', units)
        return x, mask


class AudioCRNN(AudioCNN):
    """CNN + bidirectional LSTM (``rnn_units`` per direction, default units // 2)."""

    def __init__(self, audio_dim=64, audio_frames=300, channels=(16, 32), units=64,
                 num_layers=0, num_heads=4, ffn_units=128, dropout=0.1, rnn_units=None,
                 prefix=None, params=None):
        super().__init__(audio_dim=audio_dim, audio_frames=audio_frames, channels=channels,
                         units=units, num_layers=num_layers, num_heads=num_heads,
                         ffn_units=ffn_units, dropout=dropout,
                         rnn_units=rnn_units or max(units // 2, 1), prefix=prefix, params=params)
