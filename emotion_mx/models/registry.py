"""Model registry (timm style) with presets kept as data (GluonNLP ``bert_hparams`` style).

``@register_model`` registers a factory ``fn(num_classes, modalities=None, **kw) -> HybridBlock``
under its function name (a name registered twice is an error); every preset is registered the
same way, and ``get_model`` builds any registered name.  ``get_model(name, num_classes, modalities=None, **kw)`` validates
``kw`` against the keyword arguments the preset's family accepts (one-line
:class:`EmotionMXError` listing the valid ones otherwise) and builds the block.  Keyword
arguments override the preset's hyper-parameters; feature-dependent ones (audio_dim,
audio_frames, vocab_size, max_tokens, num_frames, frame_size, frame_channels) come from the
caller (the data settings) and default to FEATURE_DEFAULTS.
"""
import inspect

from ..contract import DATA_MODEL_KWARGS, MODALITIES, check_modalities, input_names
from ..errors import EmotionMXError
from .fusion import EarlyFusion, EncoderSettings, LateFusion, MidFusion

__all__ = ["register_model", "get_model", "list_models", "input_names", "model_info",
           "PRESETS", "FEATURE_DEFAULTS", "valid_kwargs", "model_input_settings", "model_input_sizes"]

# Defaults for the data-dependent arguments (override with the feature store's values).
FEATURE_DEFAULTS = {k: getattr(EncoderSettings(), k) for k in DATA_MODEL_KWARGS}

_TINY = dict(units=32, num_heads=2, ffn_units=64, hidden_units=32, dropout=0.1,
             audio_channels=(8, 16), text_layers=1, embed_dim=32, video_width=0.25,
             video_stages=3, video_se=False)
_BASE = dict(units=128, num_heads=4, ffn_units=256, hidden_units=128, dropout=0.1,
             audio_channels=(32, 64), audio_layers=1, text_layers=2, embed_dim=128,
             video_width=0.5, video_stages=4, video_se=True)
_LARGE = dict(units=256, num_heads=8, ffn_units=1024, hidden_units=256, dropout=0.1,
              audio_channels=(32, 64, 128), audio_layers=2, text_layers=4, embed_dim=256,
              video_width=1.0, video_stages=5, video_se=True)
_PRETRAINED = dict(units=256, num_heads=4, ffn_units=512, hidden_units=256, dropout=0.1)
_PRETRAINED_ENCODERS = dict(audio_encoder="whisper_tiny_en", text_encoder="minilm_l6",
                            video_encoder="fer_mini_xception")

# name -> (family, fixed modalities or None, hyper-parameters).  Pure data.
PRESETS = {
    "early_tiny": ("early", None, dict(_TINY)),
    "early_base": ("early", None, dict(_BASE)),
    "mid_tiny": ("mid", None, dict(_TINY, cross_layers=1, self_layers=0)),
    "mid_base": ("mid", None, dict(_BASE, cross_layers=2, self_layers=1)),
    "mid_large": ("mid", None, dict(_LARGE, cross_layers=4, self_layers=2,
                                    query_modalities=("audio", "text", "video"))),
    # about a tenth of mid_base's parameters, for distillation (see docs/models.md)
    "mid_student": ("mid", None, dict(units=56, num_heads=4, ffn_units=112, hidden_units=56,
                                      dropout=0.1, audio_channels=(8, 16), audio_layers=0,
                                      text_layers=1, embed_dim=16, video_width=0.25,
                                      video_stages=3, video_se=False, cross_layers=1,
                                      self_layers=0)),
    "late_tiny": ("late", None, dict(_TINY)),
    "late_base": ("late", None, dict(_BASE)),
    # unimodal baselines (early family with one modality)
    "audio_cnn": ("early", ("audio",), dict(_BASE, audio_encoder="cnn", audio_layers=0)),
    "audio_crnn": ("early", ("audio",), dict(_BASE, audio_encoder="crnn", audio_layers=0)),
    "text_transformer": ("early", ("text",), dict(_BASE, text_encoder="transformer")),
    "text_bilstm": ("early", ("text",), dict(_BASE, text_encoder="bilstm", text_layers=1)),
    "video_mobilenet": ("early", ("video",), dict(_BASE)),
    # pretrained encoders (emotion_mx.models.pretrained): unimodal and trimodal
    "whisper_tiny_en": ("early", ("audio",), dict(_PRETRAINED, audio_encoder="whisper_tiny_en")),
    "whisper_base": ("early", ("audio",), dict(_PRETRAINED, audio_encoder="whisper_base")),
    "minilm_l6": ("early", ("text",), dict(_PRETRAINED, text_encoder="minilm_l6")),
    "fer_mini_xception": ("early", ("video",), dict(_PRETRAINED, video_encoder="fer_mini_xception")),
    "mid_pretrained": ("mid", None, dict(_PRETRAINED, **_PRETRAINED_ENCODERS, cross_layers=1, self_layers=0)),
    "late_pretrained": ("late", None, dict(_PRETRAINED, **_PRETRAINED_ENCODERS)),
}

FAMILIES = {"early": EarlyFusion, "mid": MidFusion, "late": LateFusion}

# Keyword arguments that only concern one modality (hidden for presets without it).
_MODALITY_KWARGS = {
    "audio": ("audio_dim", "audio_frames", "audio_encoder", "audio_channels", "audio_layers",
              "audio_rnn_units"),
    "text": ("vocab_size", "max_tokens", "text_encoder", "embed_dim", "text_layers",
             "embed_init"),
    "video": ("num_frames", "frame_size", "frame_channels", "video_encoder", "video_width",
              "video_stages", "video_se"),
}
_NOT_KWARGS = ("self", "num_classes", "modalities", "prefix", "params")

_REGISTRY = {}


def register_model(fn):
    """Decorator: register ``fn(num_classes, modalities=None, **kw)`` under ``fn.__name__``."""
    if fn.__name__ in _REGISTRY:
        raise EmotionMXError(f"model {fn.__name__!r} is already registered")
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models():
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def model_info(name):
    """(family class, fixed modalities or None, hyper-parameters dict copy) of a preset; for
    another registered model (its factory, None, {})."""
    _check_name(name)
    if name not in PRESETS:
        return _REGISTRY[name], None, {}
    family, fixed, hp = PRESETS[name]
    return FAMILIES[family], fixed, dict(hp)


def valid_kwargs(name):
    """Sorted keyword arguments ``get_model(name, ...)`` accepts."""
    cls, fixed, _ = model_info(name)
    params = inspect.signature(cls.__init__ if isinstance(cls, type) else cls).parameters
    names = [p for p, v in params.items() if p not in _NOT_KWARGS and v.kind != v.VAR_KEYWORD]
    if isinstance(cls, type):
        names += EncoderSettings.names()
    if fixed is not None:
        hidden = {k for m, ks in _MODALITY_KWARGS.items() if m not in fixed for k in ks}
        hidden |= {"modality_dropout", "query_modalities", "cross_layers", "self_layers",
                   "combine"}
        names = [n for n in names if n not in hidden]
    return sorted(names)


def _encoder_inputs(what, name, modalities, kw):
    cls, fixed, hp = model_info(name)
    if not isinstance(cls, type):
        return {}
    mods = fixed or check_modalities(modalities or MODALITIES)
    args = dict(hp)
    args.update({k: v for k, v in kw.items() if k in EncoderSettings.names()})
    enc = EncoderSettings(**{k: v for k, v in args.items() if k in EncoderSettings.names()})
    try:
        return getattr(enc, what)(mods)
    except ValueError as e:
        raise EmotionMXError(f"model {name!r}: {e}") from None


def model_input_settings(name, modalities=None, **kw):
    """The data settings (``audio_feature``, ``text_ids``, ``frame_norm``, ``frame_size``...)
    that preset ``name`` with ``kw`` needs for ``modalities`` because of its pretrained
    encoders; ``{}`` for a model that takes the store's features as they come."""
    return _encoder_inputs("input_settings", name, modalities, kw)


def model_input_sizes(name, modalities=None, **kw):
    """The feature sizes (``audio_dim``, ``vocab_size``, ``frame_size``, ``frame_channels``)
    the pretrained encoders of preset ``name`` fix; ``{}`` when the store decides them."""
    return _encoder_inputs("input_sizes", name, modalities, kw)


def _check_name(name):
    if name not in _REGISTRY:
        raise EmotionMXError(f"unknown model {name!r}; valid models: {', '.join(list_models())}")


def _create(name, num_classes, modalities, kw):
    cls, fixed, hp = model_info(name)
    valid = valid_kwargs(name)
    unknown = sorted(k for k in kw if k not in valid)
    if unknown:
        raise EmotionMXError(f"model {name!r} does not take {', '.join(unknown)}; "
                             f"valid kwargs: {', '.join(valid)}")
    if fixed is not None:
        if modalities is not None and tuple(modalities) != fixed:
            raise EmotionMXError(f"model {name!r} is unimodal ({fixed[0]}); "
                                 f"modalities must be {list(fixed)} or omitted, got {list(modalities)}")
        modalities = fixed
    elif modalities is None:
        modalities = MODALITIES
    modalities = check_modalities(modalities)
    args = dict(FEATURE_DEFAULTS)
    args.update(hp)
    args.update(_encoder_inputs("input_sizes", name, modalities, kw))   # a pretrained encoder's own sizes
    args.update(kw)
    args = {k: v for k, v in args.items() if k in valid or k in hp}
    try:
        return cls(num_classes=int(num_classes), modalities=modalities, **args)
    except ValueError as e:
        raise EmotionMXError(f"model {name!r}: {e}") from None


def get_model(name, num_classes, modalities=None, **kw):
    """Build preset ``name`` for ``modalities`` (default: all three, or the unimodal
    baseline's own modality) with ``num_classes`` outputs; ``kw`` overrides hyper-parameters."""
    _check_name(name)
    return _REGISTRY[name](num_classes, modalities=modalities, **kw)


def _preset_factory(name):
    def factory(num_classes, modalities=None, **kw):
        return _create(name, num_classes, modalities, kw)
    factory.__name__ = name
    factory.__doc__ = f"Preset {name!r}: family {PRESETS[name][0]!r}, hparams {PRESETS[name][2]}."
    return factory


for _name in PRESETS:
    register_model(_preset_factory(_name))
