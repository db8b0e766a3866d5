"""Hybridizable Gluon model zoo for emotion_mx.

Public API::

    get_model(name, num_classes, modalities=None, **kw) -> HybridBlock
    list_models() -> [names]; input_names(modalities) -> ['audio', 'audio_mask', ...]
    register_model (decorator), PRESETS, FEATURE_DEFAULTS, valid_kwargs(name)
    summarize(name, **kw) -> {'params', 'macs', 'macs_by_op'}

A model built for ``modalities`` takes positional inputs (x, mask) per modality in canonical
order (:mod:`emotion_mx.contract`) and returns logits (B, num_classes).  Exporting a block is
:mod:`emotion_mx.artifacts`' job (``export_block``, ``trace_symbol``).
"""
from .attention import MultiHeadAttention, PositionwiseFFN, TransformerLayer, TransformerStack
from .audio import AudioCNN, AudioCRNN
from .common import MODALITIES, MaskedPool, PositionEmbedding
from .fusion import EarlyFusion, EncoderSettings, LateFusion, MidFusion
from .registry import (FEATURE_DEFAULTS, PRESETS, get_model, input_names, list_models,
                       model_info, model_input_settings, model_input_sizes, register_model,
                       valid_kwargs)
from .summary import count_macs, example_inputs, summarize
from .text import TextBiLSTM, TextTransformer
from .video import VideoMobileNet
from .pretrained import ENCODERS, PRETRAINED_NAMES
from .zoo import ZooExperts  # registers zoo_experts

__all__ = [
    "get_model", "list_models", "input_names", "register_model", "valid_kwargs", "model_info",
    "model_input_settings", "model_input_sizes", "ENCODERS", "PRETRAINED_NAMES",
    "PRESETS", "FEATURE_DEFAULTS", "MODALITIES", "summarize", "count_macs", "example_inputs",
    "EncoderSettings", "EarlyFusion", "MidFusion", "LateFusion", "AudioCNN", "AudioCRNN", "TextTransformer",
    "TextBiLSTM", "VideoMobileNet", "MultiHeadAttention", "PositionwiseFFN", "TransformerLayer",
    "TransformerStack", "MaskedPool", "PositionEmbedding", "ZooExperts",
]
