"""YAML configuration → validated frozen dataclasses.

YAML is read once, at the CLI boundary, by :func:`load_config`; everything below the CLI takes
plain keyword arguments or these frozen dataclasses.  Validation is strict: an unknown or
misspelt key is an error naming the key, the valid keys and the file.  :func:`dump_config`
writes the resolved configuration (defaults filled in) into a run or store directory.

Each subsystem declares its own dataclasses (``DatasetConfig`` below, ``TrainConfig`` in
:mod:`emotion_mx.training.config`, ...) and uses the same machinery.
"""
import collections.abc
import dataclasses
import json
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Tuple

import yaml

from .errors import ConfigError
from .fileio import write_text

__all__ = [
    "FrozenDict", "from_dict", "to_dict", "load_config", "dump_config", "replace",
    "LabelConfig", "AudioConfig", "TextConfig", "FaceConfig", "AlignConfig", "SplitConfig",
    "DatasetConfig",
]


class FrozenDict(dict):
    """A read-only dict: picklable (configs go to worker processes) and hashable."""

    def _readonly(self, *a, **k):
        raise TypeError("configuration mappings are read-only")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _readonly

    def __hash__(self):
        return hash(json.dumps(self, sort_keys=True, default=str))

    def __reduce__(self):
        return (FrozenDict, (dict(self),))


def _type_name(tp):
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(tp, value, where, source):
    """Check/convert ``value`` against annotation ``tp``; ``where`` is the dotted key."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where, source)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{source}: '{where}' has an invalid value {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{source}: '{where}' must be a mapping, got {value!r}")
        return from_dict(tp, value, source=source, prefix=where + ".")
    if origin in (tuple, Tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            if value is None:
                raise ConfigError(f"{source}: '{where}' must be a list, got null")
            value = [value]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]", source) for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise ConfigError(f"{source}: '{where}' must have {len(args)} items, got {len(value)}")
        return tuple(_convert(a, v, f"{where}[{i}]", source) for i, (a, v) in enumerate(zip(args, value))) \
            if args else tuple(value)
    if origin in (dict, collections.abc.Mapping) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{source}: '{where}' must be a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return FrozenDict({str(k): _convert(vt, v, f"{where}.{k}", source) for k, v in value.items()})
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: '{where}' must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: '{where}' must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{source}: '{where}' must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{source}: '{where}' must be a string, got {value!r}")
    raise ConfigError(f"{source}: '{where}': unsupported type {_type_name(tp)}")


def from_dict(cls, data, source="<dict>", prefix=""):
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys by name."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: '{prefix.rstrip('.') or 'top level'}' must be a mapping")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        valid = ", ".join(sorted(fields))
        raise ConfigError(f"{source}: unknown key '{prefix}{unknown[0]}' (valid keys here: {valid})")
    kwargs = {k: _convert(hints[k], v, prefix + k, source) for k, v in data.items()}
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{source}: {e}") from None
    return obj


def to_dict(obj):
    """Plain-data (YAML/JSON-serialisable) copy of a config dataclass."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def load_config(path, cls, overrides=None):
    """Read YAML ``path`` into ``cls``; ``overrides`` (a mapping) is merged on top."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder; give a YAML file") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); save the config as UTF-8") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if overrides:
        data = _merge(data, overrides)
    return from_dict(cls, data, source=path)


def _merge(base, extra):
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def dump_config(obj, path):
    """Write the resolved config as YAML (atomically)."""
    write_text(path, yaml.safe_dump(to_dict(obj), sort_keys=False, allow_unicode=True))


def replace(obj, **changes):
    try:
        return dataclasses.replace(obj, **changes)
    except ValueError as e:   # a range check in __post_init__
        raise ConfigError(str(e)) from None


# --------------------------------------------------------------------------------------------
# Dataset building configuration (tools/build_dataset.py)
# --------------------------------------------------------------------------------------------

def _frozen_map():
    return field(default_factory=FrozenDict)


def _check_range(name, value, lo=None, hi=None, lo_open=False, hi_open=False):
    """Range validation of one config value (dataclass ``__post_init__``); ValueError names it."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ValueError(f"{name} must be a number, got {value!r}")
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise ValueError(f"{name} must be {'>' if lo_open else '>='} {lo}, got {value!r}")
    if hi is not None and (value >= hi if hi_open else value > hi):
        raise ValueError(f"{name} must be {'<' if hi_open else '<='} {hi}, got {value!r}")


@dataclass(frozen=True)
class LabelConfig:
    """Raw corpus labels → one canonical label set."""
    map: Mapping[str, str] = _frozen_map()   # raw → canonical (merge and rename)
    drop: Tuple[str, ...] = ()               # labels (raw or canonical) to skip
    keep: Tuple[str, ...] = ()               # if set: only these canonical labels, others skipped


@dataclass(frozen=True)
class AudioConfig:
    enabled: bool = True
    sample_rate: int = 16000
    n_mels: int = 64
    win_ms: float = 25.0
    hop_ms: float = 10.0
    n_mfcc: int = 20
    deltas: bool = True
    prosody: bool = True
    fmin: float = 50.0
    fmax: Optional[float] = None
    max_seconds: float = 30.0

    def __post_init__(self):
        _check_range("audio.sample_rate", self.sample_rate, 1000, 192000)
        _check_range("audio.n_mels", self.n_mels, 1, 512)
        _check_range("audio.win_ms", self.win_ms, 0, 1000, lo_open=True)
        _check_range("audio.hop_ms", self.hop_ms, 0, 1000, lo_open=True)
        _check_range("audio.n_mfcc", self.n_mfcc, 1, 512)
        _check_range("audio.fmin", self.fmin, 0, self.sample_rate / 2, hi_open=True)
        _check_range("audio.fmax", self.fmax, self.fmin, self.sample_rate / 2, lo_open=True)
        _check_range("audio.max_seconds", self.max_seconds, 0, 24 * 3600, lo_open=True)


@dataclass(frozen=True)
class TextConfig:
    enabled: bool = True
    lower: bool = True
    min_freq: int = 1
    max_vocab: int = 30000
    vectors: Optional[str] = None   # local GloVe / word2vec / fastText text file

    def __post_init__(self):
        _check_range("text.min_freq", self.min_freq, 1)
        _check_range("text.max_vocab", self.max_vocab, 1)
        if self.vectors is not None:
            # the build stores tokens only; word vectors are loaded by the model at training time
            raise ValueError("text.vectors is set but nothing in the build or training reads it; remove it "
                             "(emotion_mx.features.text.load_word_vectors loads a vector file from code)")


@dataclass(frozen=True)
class FaceConfig:
    enabled: bool = True
    num_frames: int = 8
    size: int = 48
    grayscale: bool = True
    margin: float = 0.2
    detect: bool = True
    min_face: int = 24

    def __post_init__(self):
        _check_range("face.num_frames", self.num_frames, 1, 1024)
        _check_range("face.size", self.size, 8, 1024)
        _check_range("face.margin", self.margin, 0, 2)
        _check_range("face.min_face", self.min_face, 1)


@dataclass(frozen=True)
class AlignConfig:
    enabled: bool = True
    voice: Optional[str] = None     # espeak-ng voice; default from the item's language


@dataclass(frozen=True)
class SplitConfig:
    folds: int = 5
    seed: int = 0

    def __post_init__(self):
        _check_range("splits.folds", self.folds, 1, 1000)
        _check_range("splits.seed", self.seed, 0, 2 ** 32 - 1)


@dataclass(frozen=True)
class DatasetConfig:
    corpus: Optional[str] = None
    reader: Mapping[str, Any] = _frozen_map()   # keyword options of the corpus reader
    labels: LabelConfig = LabelConfig()
    audio: AudioConfig = AudioConfig()
    text: TextConfig = TextConfig()
    face: FaceConfig = FaceConfig()
    align: AlignConfig = AlignConfig()
    splits: SplitConfig = SplitConfig()
    shard_size: int = 64

    def __post_init__(self):
        _check_range("shard_size", self.shard_size, 1, 100000)
