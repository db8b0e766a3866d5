"""Search YAML → validated frozen dataclasses → autogluon.common.space objects.

A search file has three sections::

    base:                      # a TrainConfig (configs/train/*.yaml format): every trial starts here
      model: {name: mid_tiny}
      data: {modalities: [audio, text, video]}
    space:                     # dotted TrainConfig keys → one dimension each
      model.name: {categorical: [mid_tiny, early_tiny]}
      model.kwargs.dropout: {real: [0.0, 0.5]}
      model.kwargs.units: {int: [16, 64], default: 32}
      optim.lr: {real: [1e-4, 1e-2], log: true}
      batch_size: {categorical: [16, 32]}
    budget:
      epochs: 3                # every trial trains this many epochs (overrides base.epochs)
      seconds: 3600            # wall clock for the whole search (no new trial after it)

The file is read by the project's one loader (:func:`emotion_mx.config.load_config`): ``--set``
items apply on top, and a top-level ``base:`` that is a *path* (not the mapping above) makes this
file extend another search file.

Validation happens at load, with the file named in every message: unknown keys anywhere
(sections, dimensions, dotted keys, model keyword arguments the registry does not accept for a
chosen model), malformed ranges, and every categorical value / range end is checked by building
the TrainConfig it would give, so a trial never fails on a value the file could have caught.
"""
import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Tuple

from mxnet.base import MXNetError

from ..artifacts import first_error_line
from ..config import FrozenDict, from_dict, load_config, to_dict
from ..contract import DATA_MODEL_KWARGS
from ..errors import ConfigError, EmotionMXError
from ..models import get_model, list_models, model_info, valid_kwargs
from ..optional import require
from ..training.config import ModelConfig, TrainConfig

__all__ = ["Dimension", "Budget", "SearchConfig", "load_search_config", "check_search_config",
           "to_autogluon_space", "trial_config", "space_fingerprint"]


@dataclass(frozen=True)
class Dimension:
    """One searched value: exactly one of ``categorical`` (list of values), ``real`` or ``int``
    ([lower, upper], inclusive); ``log`` (real only) samples on a log scale; ``default`` is
    what autogluon tries first (else the first category / the lower bound)."""
    categorical: Optional[Tuple[Any, ...]] = None
    real: Optional[Tuple[Any, Any]] = None
    log: bool = False
    default: Any = None
    # last, so that no annotation below it sees the name ``int`` bound to this field
    int: Optional[Tuple[Any, Any]] = None

    @property
    def kind(self):
        return next(k for k in ("categorical", "real", "int") if getattr(self, k) is not None)

    def check(self, key):
        """Raise ValueError (naming ``space.<key>``) for a malformed dimension; return the
        normalised copy (numbers converted, categorical default moved first)."""
        where = f"space.{key}"
        kinds = [k for k in ("categorical", "real", "int") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"{where} needs exactly one of categorical, real, int "
                             f"(got {', '.join(kinds) or 'none'})")
        kind = kinds[0]
        if self.log and kind != "real":
            raise ValueError(f"{where}: log: true applies to real ranges only")
        if kind == "categorical":
            values = list(self.categorical)
            if not values:
                raise ValueError(f"{where}: categorical needs at least one value")
            if self.default is not None:
                if self.default not in values:
                    raise ValueError(f"{where}: default {self.default!r} is not one of {values}")
                values.remove(self.default)
                values.insert(0, self.default)
            return dataclasses.replace(self, categorical=tuple(values), default=None)
        lo, hi = (_number(v, where, integer=(kind == "int")) for v in getattr(self, kind))
        if not lo < hi:
            raise ValueError(f"{where}: lower bound {lo} must be below upper bound {hi}")
        if self.log and lo <= 0:
            raise ValueError(f"{where}: a log range needs a lower bound > 0, got {lo}")
        default = self.default
        if default is not None:
            default = _number(default, f"{where}.default", integer=(kind == "int"))
            if not lo <= default <= hi:
                raise ValueError(f"{where}: default {default} is outside [{lo}, {hi}]")
        return dataclasses.replace(self, **{kind: (lo, hi)}, default=default)

    def probe_values(self):
        """Values that exercise this dimension's validity: every category, both range ends."""
        if self.categorical is not None:
            return list(self.categorical)
        return list(self.real if self.real is not None else self.int)


def _number(value, where, integer):
    if isinstance(value, str):       # YAML 1.1 reads 1e-4 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{where}: {value!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: {value!r} is not a finite number")
    if integer:
        if float(value) != int(value):
            raise ValueError(f"{where}: {value!r} is not an integer")
        return int(value)
    return float(value)


@dataclass(frozen=True)
class Budget:
    epochs: Optional[int] = None      # epochs of every trial (overrides base.epochs)
    seconds: Optional[float] = None   # wall clock of the whole search: no trial starts after it

    def __post_init__(self):
        if self.epochs is not None and self.epochs <= 0:
            raise ValueError(f"budget.epochs must be > 0, got {self.epochs}")
        if self.seconds is not None and self.seconds <= 0:
            raise ValueError(f"budget.seconds must be > 0, got {self.seconds}")


@dataclass(frozen=True)
class SearchConfig:
    base: TrainConfig = TrainConfig()
    space: Mapping[str, Dimension] = field(default_factory=FrozenDict)
    budget: Budget = Budget()

    def __post_init__(self):
        if not self.space:
            raise ValueError("space is empty: list at least one dimension to search "
                             "(e.g. optim.lr: {real: [1e-4, 1e-2], log: true})")
        space = FrozenDict({k: d.check(k) for k, d in self.space.items()})
        object.__setattr__(self, "space", space)
        for key in space:
            _check_key(key)
        if "epochs" in space and self.budget.epochs is not None:
            raise ValueError("'epochs' is both searched (space.epochs) and fixed (budget.epochs); keep one")
        _check_models(self)


# --------------------------------------------------------------------------------------------
# key validation against TrainConfig and the model registry
# --------------------------------------------------------------------------------------------

def _check_key(key):
    """A dotted key must name a leaf field of TrainConfig, or ``model.kwargs.<argument>``."""
    parts = key.split(".")
    cls, path = TrainConfig, []
    for i, part in enumerate(parts):
        names = {f.name: f for f in dataclasses.fields(cls)}
        if part not in names:
            prefix = ".".join(path)
            valid = ", ".join(sorted(f"{prefix}.{n}" if prefix else n for n in names))
            raise ValueError(f"unknown search key 'space.{key}' (valid keys here: {valid})")
        path.append(part)
        if cls is ModelConfig and part == "kwargs":
            if len(parts) != i + 2:
                raise ValueError(f"space.{key}: write model keyword arguments as "
                                 f"model.kwargs.<name>, e.g. model.kwargs.dropout")
            return
        ftype = names[part].type
        if dataclasses.is_dataclass(ftype):
            cls = ftype
            if i == len(parts) - 1:
                raise ValueError(f"space.{key} is a section; search one of its keys "
                                 f"({', '.join(f'{key}.{f.name}' for f in dataclasses.fields(ftype))})")
        elif i != len(parts) - 1:
            raise ValueError(f"unknown search key 'space.{key}': '{'.'.join(path)}' has no sub-keys")


def _choices(cfg, key, base_value):
    dim = cfg.space.get(key)
    return list(dim.categorical) if dim is not None and dim.categorical is not None else [base_value]


def _check_models(cfg):
    if "model.name" in cfg.space and cfg.space["model.name"].kind != "categorical":
        raise ValueError("space.model.name must be categorical (a list of registry names)")
    names = _choices(cfg, "model.name", cfg.base.model.name)
    known = list_models()
    for name in names:
        if name not in known:
            raise ValueError(f"space.model.name: unknown model {name!r} (registry: {', '.join(known)})")
    kwargs = sorted(set(cfg.base.model.kwargs) |
                    {k.split(".", 2)[2] for k in cfg.space if k.startswith("model.kwargs.")})
    for kw in kwargs:
        if kw in DATA_MODEL_KWARGS:
            raise ValueError(f"model.kwargs.{kw} comes from the feature store and cannot be searched "
                             "(search data.max_audio_frames / data.max_tokens / data.num_frames instead)")
        for name in names:
            if kw not in valid_kwargs(name):
                raise ValueError(f"model.kwargs.{kw} is not accepted by model {name!r} "
                                 f"(its keyword arguments: {', '.join(valid_kwargs(name))})")
    modality_sets = _choices(cfg, "data.modalities", cfg.base.data.modalities)
    for name in names:
        fixed = model_info(name)[1]
        for mods in modality_sets:
            mods = tuple(mods) if isinstance(mods, (list, tuple)) else (mods,)
            if fixed is not None and tuple(sorted(mods)) != tuple(sorted(fixed)):
                raise ValueError(f"model {name!r} is unimodal ({fixed[0]}) but data.modalities "
                                 f"is {list(mods)}; search it with data.modalities: [{fixed[0]}]")


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------

def load_search_config(path, sets=()):
    """Read and fully validate a search YAML (the project's one loader: ``base:`` composition,
    ``--set`` items ``sets``); every error is a ConfigError naming ``path``."""
    cfg = load_config(path, SearchConfig, sets=sets)
    check_search_config(cfg, source=os.fspath(path))
    return cfg


def check_search_config(cfg, source="search config"):
    """Build the TrainConfig of every categorical value and range end (others at their
    defaults): a value TrainConfig rejects is reported here, with its key."""
    # each value alone on the base first, so an error names the key whose value is at fault
    # (with the other keys at their defaults, a bad default would be blamed on every other key)
    for key, dim in cfg.space.items():
        for value in dim.probe_values():
            trial_config(cfg, {key: value}, source=f"{source}: space.{key} = {value!r}")
    default = {k: _default(d) for k, d in cfg.space.items()}
    for key, dim in cfg.space.items():
        for value in dim.probe_values():
            where = f"{source}: space.{key} = {value!r}"
            others = ", ".join(f"{k} = {v!r}" for k, v in default.items() if k != key)
            tc = trial_config(cfg, {**default, key: value},
                              source=f"{where} (with {others})" if others else where)
            if key.startswith("model."):
                # construct the block (parameters stay uninitialised: cheap) to catch values the
                # architecture rejects, e.g. an unknown encoder type
                try:
                    get_model(tc.model.name, num_classes=2, modalities=tc.data.modalities, **tc.model.kwargs)
                except (EmotionMXError, ValueError, TypeError, AssertionError, MXNetError) as e:
                    raise ConfigError(f"{where}: {first_error_line(e)}") from None


def _default(dim):
    if dim.categorical is not None:
        return dim.categorical[0]
    return dim.default if dim.default is not None else (dim.real or dim.int)[0]


def to_autogluon_space(cfg):
    """``{dotted key: autogluon.common.space.Categorical | Real | Int}``."""
    ag = require("autogluon.common.space", "search", "the architecture search")
    out = {}
    for key, dim in cfg.space.items():
        if dim.categorical is not None:
            out[key] = ag.Categorical(*dim.categorical)
        elif dim.real is not None:
            out[key] = ag.Real(dim.real[0], dim.real[1], default=dim.default, log=dim.log)
        else:
            out[key] = ag.Int(dim.int[0], dim.int[1], default=dim.default)
    return out


def trial_config(cfg, params, seed=None, source="search trial"):
    """The TrainConfig of one trial: ``base`` + sampled ``params`` (dotted keys) + budget."""
    data = to_dict(cfg.base)
    for key, value in params.items():
        *parents, leaf = key.split(".")
        node = data
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = _plain(value)
    if cfg.budget.epochs is not None:
        data["epochs"] = cfg.budget.epochs
    if seed is not None:
        data["seed"] = int(seed)
    return from_dict(TrainConfig, data, source=source)


def _plain(value):
    """numpy scalars (sklearn samplers) → Python numbers; tuples → lists."""
    if hasattr(value, "item") and not isinstance(value, (list, tuple, dict)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def space_fingerprint(cfg):
    """Plain-data description of everything that decides the trials (for restart checks)."""
    return {"base": to_dict(cfg.base), "space": to_dict(cfg.space), "budget_epochs": cfg.budget.epochs}
