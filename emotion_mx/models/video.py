"""Face/video encoder: a MobileNetV2-style CNN per frame, then per-frame features.

Input (B, N, C, H, W) frames (a still image is N=1) and mask (B, N).  Frames are folded into
the batch with an explicit reshape (-1, C, H, W) (C, H, W known at construction), encoded by
stem Conv3x3/2 -> inverted residual blocks (1x1 expand, 3x3 depthwise, optional
squeeze-and-excitation, 1x1 linear projection, residual when shapes match) -> 1x1 conv ->
global average pool -> Dense(units), and unfolded to (B, N, units).  Temporal pooling over
frames is done by the fusion model with the frame mask (masked mean / attention).

ReLU instead of ReLU6 so oneDNN can fuse Conv+BN+ReLU in INT8.  Padded frames are zeroed
first (``x * mask``).
"""
from mxnet.gluon import HybridBlock, nn

__all__ = ["VideoMobileNet", "InvertedResidual", "MOBILENET_STAGES"]

# MobileNetV2 stages (expansion t, channels c, repeats n, stride s) for small face crops.
MOBILENET_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2), (6, 64, 2, 2), (6, 96, 1, 1))


def _divisible(v, divisor=8):
    return max(divisor, int(v + divisor / 2) // divisor * divisor)


def _conv_bn(channels, kernel, stride, groups=1, relu=True, prefix=""):
    out = nn.HybridSequential(prefix=prefix)
    with out.name_scope():
        out.add(nn.Conv2D(channels, kernel_size=kernel, strides=stride, padding=kernel // 2,
                          groups=groups, use_bias=False, prefix="conv_"))
        out.add(nn.BatchNorm(prefix="bn_"))
        if relu:
            out.add(nn.Activation("relu", prefix="relu_"))
    return out


class _SqueezeExcite(HybridBlock):
    def __init__(self, channels, reduction=4, prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        with self.name_scope():
            self.reduce = nn.Conv2D(max(channels // reduction, 8), 1, activation="relu",
                                    prefix="reduce_")
            self.expand = nn.Conv2D(channels, 1, activation="sigmoid", prefix="expand_")

    def hybrid_forward(self, F, x):
        s = F.Pooling(x, kernel=(1, 1), global_pool=True, pool_type="avg")  # (B, C, 1, 1)
        return F.broadcast_mul(x, self.expand(self.reduce(s)))        # (B, C, H, W)


class InvertedResidual(HybridBlock):
    def __init__(self, in_channels, channels, expansion, stride, se=False,
                 prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        self._residual = stride == 1 and in_channels == channels
        hidden = in_channels * expansion
        with self.name_scope():
            self.body = nn.HybridSequential(prefix="")
            if expansion != 1:
                self.body.add(_conv_bn(hidden, 1, 1, prefix="expand_"))
            self.body.add(_conv_bn(hidden, 3, stride, groups=hidden, prefix="dw_"))
            if se:
                self.body.add(_SqueezeExcite(hidden, prefix="se_"))
            self.body.add(_conv_bn(channels, 1, 1, relu=False, prefix="project_"))

    def hybrid_forward(self, F, x):
        out = self.body(x)                                            # (B, C', H', W')
        return x + out if self._residual else out


class VideoMobileNet(HybridBlock):
    """Per-frame MobileNetV2-style encoder: (B, N, C, H, W), (B, N) -> (B, N, units), (B, N)."""

    def __init__(self, num_frames=8, frame_size=48, frame_channels=1, width=0.5, stages=5,
                 se=True, units=64, prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        if not 1 <= stages <= len(MOBILENET_STAGES):
            raise ValueError(f"stages must be in 1..{len(MOBILENET_STAGES)}, not {stages}")
        self._n = num_frames
        self._chw = (frame_channels, frame_size, frame_size)
        self.out_frames = num_frames
        self.units = units
        with self.name_scope():
            self.features = nn.HybridSequential(prefix="features_")
            with self.features.name_scope():
                c_in = _divisible(32 * width)
                self.features.add(_conv_bn(c_in, 3, 2, prefix="stem_"))
                k = 0
                for t, c, n, s in MOBILENET_STAGES[:stages]:
                    c_out = _divisible(c * width)
                    for i in range(n):
                        self.features.add(InvertedResidual(c_in, c_out, t, s if i == 0 else 1,
                                                           se=se, prefix=f"block{k}_"))
                        c_in, k = c_out, k + 1
                self.features.add(_conv_bn(_divisible(4 * c_in), 1, 1, prefix="head_"))
                self.features.add(nn.GlobalAvgPool2D(prefix="gap_"))
            self.proj = nn.Dense(units, activation="relu", prefix="proj_")

    def hybrid_forward(self, F, x, mask):
        c, h, w = self._chw
        # 1. zero padded frames, fold frames into the batch
        x = F.broadcast_mul(x, F.reshape(mask, shape=(0, 0, 1, 1, 1)))  # (B, N, C, H, W)
        x = F.reshape(x, shape=(-1, c, h, w))                        # (B*N, C, H, W)
        # 2. per-frame CNN
        x = self.features(x)                                          # (B*N, C', 1, 1)
        x = self.proj(x)                                              # (B*N, units)
        # 3. unfold frames
        x = F.reshape(x, shape=(-1, self._n, self.units))             # (B, N, units)
        return x, mask
