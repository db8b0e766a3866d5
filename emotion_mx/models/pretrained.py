"""Registry entries of the pretrained encoders: ``get_model('whisper_tiny_en', num_classes)``.

Each preset builds an :class:`~emotion_mx.models.layer_head.EncoderClassifier` for its own
modality: encoder + per-layer pooling + layer-weighted head, inputs ``(x, mask)`` as in the
model-input contract (Whisper: ``(B, T, 80)`` Whisper log-mel; MiniLM: ``(B, L)`` WordPiece ids;
mini-Xception: ``(B, N, 1, 64, 64)`` faces in [-1, 1]).  ``pretrained=True`` loads the
checkpoint (installed package, or ``checkpoint=PATH``); the head starts random.
"""
from ..errors import EmotionMXError
from .layer_head import EncoderClassifier, LayerWeightedHead
from .registry import register_model

__all__ = ["PRETRAINED_NAMES"]

PRETRAINED_NAMES = ("whisper_tiny_en", "whisper_base", "minilm_l6", "fer_mini_xception")


def _factory(name):
    def factory(num_classes, modalities=None, pretrained=False, checkpoint=None, layer=None,
                hidden_units=0, dropout=0.0, std=True):
        from ..pretrained.loader import build_encoder, encoder_info, load_encoder
        info = encoder_info(name)
        if modalities is not None and tuple(modalities) != (info["modality"],):
            raise EmotionMXError(f"model {name!r} is a {info['modality']} encoder; modalities must be "
                                 f"[{info['modality']}] or omitted, got {list(modalities)}")
        encoder = load_encoder(name, checkpoint) if pretrained else build_encoder(name)
        face = info["kind"] == "fer"
        width = info["units"] * (2 if std and not face else 1)
        head = LayerWeightedHead(info["num_states"], width, int(num_classes), hidden_units=hidden_units,
                                 dropout=dropout, layer=layer, prefix="head_")
        net = EncoderClassifier(encoder, head, kind="face" if face else "sequence", std=std,
                                prefix=f"{name}_clf_")
        net.modalities = (info["modality"],)
        if pretrained:
            head.initialize()
        return net
    factory.__name__ = name
    factory.__doc__ = f"Pretrained encoder {name!r} + layer-weighted head (see emotion_mx.models.pretrained)."
    return factory


for _name in PRETRAINED_NAMES:
    register_model(_factory(_name))
