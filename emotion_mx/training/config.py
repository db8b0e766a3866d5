"""Training configuration: frozen dataclasses read with :func:`emotion_mx.config.load_config`.

Every section has defaults, so a YAML file only lists what differs; an unknown or misspelt key
is a :class:`~emotion_mx.errors.ConfigError` naming the key and the file.  ``batch_size`` is the
*global* batch size: it is split over the contexts of one process and, with a ``dist_*``
kvstore, over the workers.
"""
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Tuple

from ..config import FrozenDict, load_config
from ..contract import MODALITIES, check_modalities

__all__ = ["ModelConfig", "DataConfig", "OptimConfig", "LossConfig", "AugmentConfig",
           "InitConfig", "TrainConfig", "load_train_config", "MODALITIES"]


def _choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


def _positive(name, value, strict=True):
    if value is None:
        return
    if (value <= 0) if strict else (value < 0):
        raise ValueError(f"{name} must be {'> 0' if strict else '>= 0'}, got {value!r}")


# model keyword arguments that are layer sizes (units, channels, heads, widths): integers >= 1
SIZE_SUFFIXES = ("units", "channels", "heads", "_dim", "width")


@dataclass(frozen=True)
class ModelConfig:
    name: str = "audio_cnn"
    # architecture keyword arguments (hidden sizes, dropout...); feature-dependent ones
    # (audio_dim, vocab_size, ...) come from the feature store and must not be set here
    kwargs: Mapping[str, Any] = field(default_factory=FrozenDict)

    def __post_init__(self):
        for key, value in self.kwargs.items():
            if str(key).endswith(SIZE_SUFFIXES) and value is not None:
                values = list(value) if isinstance(value, (list, tuple)) else [value]
                if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
                    raise ValueError(f"model.kwargs.{key} is a layer size: it must be "
                                     f"{'a list of integers' if isinstance(value, (list, tuple)) else 'an integer'}"
                                     f" >= 1, got {value!r}")
            if "dropout" in str(key) and value is not None:
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                    raise ValueError(f"model.kwargs.{key} must be a probability in [0, 1), got {value!r}")


@dataclass(frozen=True)
class DataConfig:
    modalities: Tuple[str, ...] = ("audio",)
    audio_feature: str = "logmel"          # logmel | mfcc | logmel+prosody (as the store offers)
    audio_norm: str = "fold"               # fold: train-split statistics; utterance: also remove each utterance's mean
    max_audio_frames: Optional[int] = None  # None: the store's / reader's default
    max_tokens: Optional[int] = None
    num_frames: Optional[int] = None

    def __post_init__(self):
        # canonical order, whatever order the user wrote
        object.__setattr__(self, "modalities", check_modalities(self.modalities, "data.modalities"))
        _choice("data.audio_norm", self.audio_norm, ("fold", "utterance"))
        for k in ("max_audio_frames", "max_tokens", "num_frames"):
            _positive(f"data.{k}", getattr(self, k))


@dataclass(frozen=True)
class OptimConfig:
    optimizer: str = "adamw"       # adamw | sgd
    lr: float = 1e-3
    wd: float = 1e-4
    momentum: float = 0.9          # sgd only
    schedule: str = "cosine"       # cosine | plateau | constant
    warmup_epochs: float = 0.0     # linear warm-up from 0 (per step), before the schedule
    min_lr_ratio: float = 0.0      # cosine floor as a fraction of lr
    plateau_factor: float = 0.5    # plateau: multiply lr by this ...
    plateau_patience: int = 3      # ... after this many epochs without a better validation UA
    clip_gradient: Optional[float] = None   # element-wise clip of the (unscaled) gradient

    def __post_init__(self):
        _choice("optim.optimizer", self.optimizer, ("adamw", "sgd"))
        _choice("optim.schedule", self.schedule, ("cosine", "plateau", "constant"))
        _positive("optim.lr", self.lr)
        _positive("optim.wd", self.wd, strict=False)
        _positive("optim.warmup_epochs", self.warmup_epochs, strict=False)
        _positive("optim.clip_gradient", self.clip_gradient)
        if not 0.0 < self.plateau_factor < 1.0:
            raise ValueError(f"optim.plateau_factor must be in (0, 1), got {self.plateau_factor}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"optim.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")


@dataclass(frozen=True)
class LossConfig:
    type: str = "ce"               # ce | focal
    class_weights: str = "none"    # none | balanced (n / (K * count_k) on the training split)
    label_smoothing: float = 0.0
    focal_gamma: float = 2.0
    # weight of the per-modality expert losses (models with unimodal experts: mid with
    # experts=true, late with combine=product); 0 = fused loss only
    aux_weight: float = 0.0

    def __post_init__(self):
        _choice("loss.type", self.type, ("ce", "focal"))
        _choice("loss.class_weights", self.class_weights, ("none", "balanced"))
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"loss.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        _positive("loss.focal_gamma", self.focal_gamma, strict=False)
        _positive("loss.aux_weight", self.aux_weight, strict=False)


@dataclass(frozen=True)
class AugmentConfig:
    """Feature-space augmentation, applied to the training split only (never valid/test).

    The store holds features, so: time stretch = linear resampling along time by a factor in
    [1 - time_stretch, 1 + time_stretch]; pitch shift = a shift of up to ``pitch_shift_bins``
    mel bins; SpecAugment masks; Gaussian noise on the normalised features; face frames:
    horizontal flip with probability ``face_flip``, brightness/contrast jitter.
    """
    noise_std: float = 0.0
    time_stretch: float = 0.0
    pitch_shift_bins: int = 0
    time_masks: int = 0
    time_mask_width: int = 10
    freq_masks: int = 0
    freq_mask_width: int = 8
    face_flip: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0

    def __post_init__(self):
        for f in dataclasses.fields(self):
            _positive(f"augment.{f.name}", getattr(self, f.name), strict=False)
        if self.time_stretch >= 1.0:
            raise ValueError(f"augment.time_stretch must be < 1, got {self.time_stretch}")
        if self.face_flip > 1.0:
            raise ValueError(f"augment.face_flip is a probability, got {self.face_flip}")
        # upper bounds beyond which the "augmentation" only destroys the input
        for name, hi in (("time_masks", 20), ("freq_masks", 20), ("noise_std", 5.0), ("brightness", 1.0)):
            if getattr(self, name) > hi:
                raise ValueError(f"augment.{name} must be <= {hi}, got {getattr(self, name)!r}")
        if self.contrast >= 1.0:
            raise ValueError(f"augment.contrast must be < 1 (a factor in [1 - contrast, 1 + contrast]), "
                             f"got {self.contrast!r}")

    @property
    def enabled(self):
        return any(getattr(self, f.name) for f in dataclasses.fields(self)
                   if f.name not in ("time_mask_width", "freq_mask_width"))


@dataclass(frozen=True)
class InitConfig:
    """Warm start: copy per-modality encoder weights from earlier runs of the *same fold*.

    ``encoders`` maps a modality to a run directory (``tools/train.py --out``); ``{fold}`` and
    ``{seed}`` in the path are filled in per run, so one config serves every cross-validation
    fold.  A source run of another fold or another store is refused: its training split would
    hold this fold's test speakers.  ``encoder_lr_mult`` scales the learning rate of the copied
    weights (0 freezes them).
    """
    encoders: Mapping[str, str] = field(default_factory=FrozenDict)
    encoder_lr_mult: float = 1.0
    # pretrained encoders in the model (emotion_mx.models.pretrained): fine-tuning set-up
    pretrained: bool = True            # load their checkpoints (False: random init, an ablation)
    checkpoints: Mapping[str, str] = field(default_factory=FrozenDict)  # encoder name -> file (default: package)
    freeze_layers: int = 0             # freeze the stem and the first K layers; -1 freezes the whole encoder
    pretrained_lr_mult: float = 1.0    # learning-rate multiplier of the encoder's top layer ...
    layer_decay: float = 1.0           # ... times layer_decay per layer below it (layer-wise decay)

    def __post_init__(self):
        if self.freeze_layers < -1:
            raise ValueError(f"init.freeze_layers must be >= -1 (-1 freezes the whole encoder), got {self.freeze_layers}")
        _positive("init.pretrained_lr_mult", self.pretrained_lr_mult, strict=False)
        _positive("init.layer_decay", self.layer_decay)
        if self.encoders:
            check_modalities(list(self.encoders), "init.encoders")
        for m, template in self.encoders.items():
            rest = str(template).replace("{fold}", "").replace("{seed}", "")
            if "{" in rest or "}" in rest:
                raise ValueError(f"init.encoders.{m}: {template!r} may use only {{fold}} and {{seed}}")
        _positive("init.encoder_lr_mult", self.encoder_lr_mult, strict=False)


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    loss: LossConfig = LossConfig()
    augment: AugmentConfig = AugmentConfig()
    init: InitConfig = InitConfig()
    epochs: int = 30
    batch_size: int = 32           # global batch size (all contexts and workers together)
    patience: Optional[int] = 10   # early stopping on validation UA; None = never stop early
    seed: int = 0
    eval_batch_size: int = 64
    keep_checkpoints: int = 2      # newest epoch checkpoints kept; 0 keeps all
    hybridize: bool = True

    def __post_init__(self):
        _positive("epochs", self.epochs)
        _positive("batch_size", self.batch_size)
        _positive("eval_batch_size", self.eval_batch_size)
        _positive("patience", self.patience)
        _positive("keep_checkpoints", self.keep_checkpoints, strict=False)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2 ** 31:
            raise ValueError(f"seed must be an integer in 0..2^31-1, got {self.seed!r}")
        unused = [m for m in self.init.encoders if m not in self.data.modalities]
        if unused:
            raise ValueError(f"init.encoders names {unused[0]!r}, which is not in data.modalities "
                             f"{list(self.data.modalities)}")


def load_train_config(path=None, overrides=None, sets=()):
    """``TrainConfig`` from YAML ``path`` (or defaults) with ``--set`` items ``sets`` and then
    ``overrides`` (a mapping) merged on top."""
    return load_config(path, TrainConfig, overrides=overrides, sets=sets)
