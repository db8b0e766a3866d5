"""YAML configuration → validated frozen dataclasses.

YAML is read once, at the CLI boundary, by :func:`load_config`; everything below the CLI takes
plain keyword arguments or these frozen dataclasses.  Validation is strict: an unknown or
misspelt key is an error naming the key, the valid keys and the file.  :func:`dump_config`
writes the resolved configuration (defaults filled in) into a run or store directory.

Each subsystem declares its own dataclasses (``DatasetConfig`` below, ``TrainConfig`` in
:mod:`emotion_mx.training.config`, ``SearchConfig`` in :mod:`emotion_mx.search.config`) and
uses the same machinery, including the one YAML loader (:func:`read_yaml`: YAML 1.2 numbers,
duplicate keys and self-referencing aliases refused, ``base: OTHER.yaml`` composition) and
``--set dotted.key=value`` overrides (:func:`parse_sets`).  :func:`config_path` finds a shipped
``configs/...`` file in the installed package when the path does not exist locally.
"""
import collections.abc
import dataclasses
import glob
import json
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any, Mapping, Optional, Tuple

import yaml

from .errors import ConfigError
from .fileio import write_text

__all__ = [
    "FrozenDict", "from_dict", "to_dict", "load_config", "read_yaml", "parse_yaml", "parse_sets",
    "config_path", "dump_config", "replace",
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
        _check_finite_values(value, where, source)
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
            _check_finite_values(value, where, source)
            return float(value)
        raise ConfigError(f"{source}: '{where}' must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{source}: '{where}' must be a string, got {value!r}")
    raise ConfigError(f"{source}: '{where}': unsupported type {_type_name(tp)}")


def _check_finite_values(value, where, source):
    """NaN and infinity are never meaningful configuration values (YAML reads ``.nan``/``.inf``):
    refuse them anywhere, also inside free-form mappings and lists, naming the key."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{source}: '{where}' must be a finite number, got {value!r}; "
                          "write a number (NaN and infinity are not configuration values)")
    if isinstance(value, Mapping):
        for k, v in value.items():
            _check_finite_values(v, f"{where}.{k}", source)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_finite_values(v, f"{where}[{i}]", source)


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


# --------------------------------------------------------------------------------------------
# The one YAML loader (dataset, training and search files alike)
# --------------------------------------------------------------------------------------------

class _YamlProblem(Exception):
    """Raised inside the loader; turned into one ConfigError line naming the file."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads 1e-4 / 5E+3 (no dot) as floats, as YAML 1.2 does, and refuses
    duplicate keys and aliases that refer to the node they are part of."""

    def __init__(self, stream):
        super().__init__(stream)
        self._open_anchors = set()

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open_anchors:
                raise _YamlProblem(f"alias *{event.anchor} refers to the node it is part of "
                                   f"(line {event.start_mark.line + 1})")
            return super().compose_node(parent, index)
        anchor = getattr(event, "anchor", None)
        if anchor is None:
            return super().compose_node(parent, index)
        self._open_anchors.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._open_anchors.discard(anchor)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue                      # '<<: *anchor' may be overridden below it
                if not isinstance(key_node, yaml.ScalarNode):
                    raise _YamlProblem(f"a mapping key must be a plain value, not a "
                                       f"{'list' if isinstance(key_node, yaml.SequenceNode) else 'mapping'} "
                                       f"(line {key_node.start_mark.line + 1}); write 'name: value'")
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, collections.abc.Hashable) and key in seen:
                    raise _YamlProblem(f"duplicate key {key!r} (line {key_node.start_mark.line + 1})")
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+][0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def parse_yaml(text, source):
    """One YAML document → Python data (the project's loader); errors name ``source``."""
    try:
        return yaml.load(text, Loader=_Loader)
    except _YamlProblem as e:
        raise ConfigError(f"{source}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML ({str(e).splitlines()[0]})") from None
    except RecursionError:
        raise ConfigError(f"{source}: not valid YAML (nested too deeply)") from None


SHIPPED_PREFIX = "configs/"


def shipped_dirs():
    """The folders that may hold the shipped ``configs/``: the installed package's (wheel), then
    the source checkout's."""
    return [os.fspath(files("emotion_mx") / "configs"),
            os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")]


def config_path(path):
    """``path`` if it exists; else a shipped file named ``configs/...`` from the installed
    package (wheel) or from the source checkout; else ``path`` unchanged (reported as missing)."""
    path = os.fspath(path)
    if os.path.exists(path):
        return path
    rel = path.replace(os.sep, "/")
    if rel.startswith("./"):
        rel = rel[2:]
    if rel.startswith(SHIPPED_PREFIX):
        inner = rel[len(SHIPPED_PREFIX):]
        for c in (os.path.join(d, inner) for d in shipped_dirs()):
            if os.path.isfile(c):
                return c
    return path


def _base_path(path, base):
    """The file ``base:`` in config ``path`` names: next to ``path`` (or absolute); else a shipped
    config: ``configs/datasets/x.yaml``, ``datasets/x.yaml`` or a bare ``x.yaml`` / ``x`` found in
    one shipped folder.  Not found (or a bare name in several folders): one line naming where it looked."""
    local = base if os.path.isabs(base) else os.path.join(os.path.dirname(path), base)
    if os.path.isfile(local):
        return local
    rel = base.replace(os.sep, "/").removeprefix("./").removeprefix(SHIPPED_PREFIX)
    if not rel.endswith((".yaml", ".yml")):
        rel += ".yaml"
    for d in dict.fromkeys(shipped_dirs()):
        if os.path.isfile(os.path.join(d, rel)):
            return os.path.join(d, rel)
        if "/" not in rel:                                     # a bare name: one shipped folder's file
            found = sorted(os.path.relpath(c, d) for c in glob.glob(os.path.join(d, "**", rel), recursive=True))
            if len(found) > 1:
                raise ConfigError(f"{path}: base {base!r} names several shipped configs "
                                  f"({', '.join(SHIPPED_PREFIX + f for f in found)}); write one of them as base")
            if found:
                return os.path.join(d, found[0])
    shipped = " or ".join(d for d in dict.fromkeys(shipped_dirs()) if os.path.isdir(d))
    raise ConfigError(f"{path}: base file {base!r} not found (looked next to it: {os.path.abspath(local)}; "
                      f"and in the shipped configs: {shipped or 'none installed'}); give a path relative to "
                      "this file or configs/<section>/<name>.yaml")


BASE_KEY = "base"


def read_yaml(path, _chain=()):
    """Read a config file into a plain mapping, resolving ``base: OTHER.yaml`` (a string at the
    top level, relative to this file, else a shipped config: :func:`_base_path`) by deep-merging
    this file over the base; cycles refused."""
    path = config_path(path)
    real = os.path.realpath(path)
    if real in _chain:
        loop = " -> ".join(os.path.basename(p) for p in (*_chain, real))
        raise ConfigError(f"{path}: 'base:' chain comes back to this file ({loop})")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder; give a YAML file") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); save the config as UTF-8") from None
    except PermissionError:
        raise ConfigError(f"{path}: cannot read the config file (permission denied)") from None
    data = parse_yaml(text, path)
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    base = data.get(BASE_KEY)
    if isinstance(base, str):
        data = {k: v for k, v in data.items() if k != BASE_KEY}
        data = _merge(read_yaml(_base_path(path, base), (*_chain, real)), data)
    return data


def parse_sets(cls, sets, option="--set"):
    """``["optim.lr=1e-4", "data.modalities=[audio,text]"]`` → a nested override mapping.

    Each value is read as YAML (so numbers, lists and null work as in a file); the dotted key
    must name a field of ``cls`` (any key below a free-form mapping such as ``model.kwargs``),
    and the value is checked against that field's type.  Errors are one line naming the item.
    """
    out = {}
    for item in sets or ():
        key, sep, raw = str(item).partition("=")
        key = key.strip()
        where = f"{option} {item}"
        if not sep or not key:
            raise ConfigError(f"{where}: expected dotted.key=value, e.g. optim.lr=0.001")
        value = parse_yaml(raw, where) if raw.strip() else None
        parts = key.split(".")
        tp, path = cls, []
        for i, part in enumerate(parts):
            if dataclasses.is_dataclass(tp):
                hints = typing.get_type_hints(tp)
                names = [f.name for f in dataclasses.fields(tp) if f.init]
                if part not in names:
                    prefix = ".".join(path)
                    valid = ", ".join(f"{prefix}.{n}" if prefix else n for n in sorted(names))
                    raise ConfigError(f"{where}: unknown key '{'.'.join(path + [part])}' "
                                      f"(valid keys here: {valid})")
                tp = hints[part]
                path.append(part)
                continue
            origin = typing.get_origin(tp)
            if origin in (dict, collections.abc.Mapping) or tp in (dict, Mapping):
                # free-form mapping: the rest of the dotted key is one key of it
                args = typing.get_args(tp)
                tp = args[1] if len(args) == 2 else Any
                path.append(".".join(parts[i:]))
                break
            raise ConfigError(f"{where}: '{'.'.join(path)}' has no sub-keys")
        if dataclasses.is_dataclass(tp) and not isinstance(value, Mapping):
            raise ConfigError(f"{where}: '{key}' is a section; set one of its keys "
                              f"({', '.join(f'{key}.{f.name}' for f in dataclasses.fields(tp))})")
        if dataclasses.is_dataclass(tp):
            value = to_dict(from_dict(tp, value, source=option, prefix=key + "."))
        else:
            value = to_dict(_convert(tp, value, key, option))
        node = out
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = value
    return out


def load_config(path, cls, overrides=None, sets=()):
    """Read YAML ``path`` (``base:`` resolved) into ``cls``; ``sets`` (``--set key=value`` items,
    see :func:`parse_sets`) and then ``overrides`` (a mapping) are merged on top.  ``path=None``
    starts from the defaults of ``cls``."""
    data = read_yaml(path) if path is not None else {}
    source = os.fspath(config_path(path)) if path is not None else "command-line options"
    set_values = parse_sets(cls, sets) if sets else {}
    if overrides:
        _check_no_conflict(set_values, overrides)
    if sets:
        data = _merge(data, set_values)
        source += " with --set"
    if overrides:
        data = _merge(data, overrides)
    return from_dict(cls, data, source=source)


def _leaves(data, prefix=""):
    for k, v in data.items():
        if isinstance(v, Mapping) and v:
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def _check_no_conflict(set_values, overrides):
    """A key given both by ``--set`` and by a command-line option (``overrides``: ``--epochs``
    gives ``epochs``) is refused unless both say the same: neither silently wins."""
    given = dict(_leaves(set_values))
    for key, value in _leaves(overrides):
        if key in given and to_dict(given[key]) != to_dict(value):
            flag = "--" + key.rsplit(".", 1)[-1].replace("_", "-")
            raise ConfigError(f"--set {key}={given[key]!r} conflicts with {flag} {value!r}; "
                              f"give {key} once (either --set or {flag})")


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
    whisper: bool = False        # also store Whisper's log-mel (the pretrained Whisper encoders' input)
    trim_db: Optional[float] = None  # cut leading/trailing silence quieter than this many dB below the peak

    def __post_init__(self):
        if self.whisper and self.sample_rate != 16000:
            raise ValueError(f"audio.whisper needs audio.sample_rate: 16000 (Whisper's front end), got {self.sample_rate}")
        _check_range("audio.sample_rate", self.sample_rate, 1000, 192000)
        _check_range("audio.n_mels", self.n_mels, 1, 512)
        _check_range("audio.win_ms", self.win_ms, 0, 1000, lo_open=True)
        _check_range("audio.hop_ms", self.hop_ms, 0, 1000, lo_open=True)
        _check_range("audio.n_mfcc", self.n_mfcc, 1, 512)
        _check_range("audio.fmin", self.fmin, 0, self.sample_rate / 2, hi_open=True)
        _check_range("audio.fmax", self.fmax, self.fmin, self.sample_rate / 2, lo_open=True)
        _check_range("audio.max_seconds", self.max_seconds, 0, 24 * 3600, lo_open=True)
        _check_range("audio.trim_db", self.trim_db, 0, 200, lo_open=True)


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
    detector: str = "haar"                  # 'haar' | 'yunet' (emotion_mx.features.face.DETECTORS)
    detector_model: Optional[str] = None    # YuNet ONNX file [$EMOTION_MX_YUNET_MODEL]

    def __post_init__(self):
        if self.detector not in ("haar", "yunet"):
            raise ValueError(f"face.detector must be 'haar' or 'yunet', got {self.detector!r}")
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
