"""Raw corpus labels → canonical labels.

Readers keep each corpus' own label codes (EmoDB ``W``, IEMOCAP ``exc``, CREMA-D ``ANG``...).
:func:`apply_label_config` maps them with a :class:`~emotion_mx.config.LabelConfig`:

1. ``drop``: a raw label listed there is skipped;
2. ``map``: raw → canonical (several raw labels may merge into one); unmapped labels pass
   through unchanged; a mapped label listed in ``drop`` is skipped;
3. ``keep``: if non-empty, only these canonical labels survive.

:data:`DEFAULT_LABELS` holds each corpus' default configuration, written onto one canonical
vocabulary (``anger boredom calm contempt disgust fear happiness neutral sadness surprise``
plus corpus-specific classes such as ``shame``, ``guilt``, ``frustration``).  Pass
``corpus=`` to :func:`apply_label_config` to layer a corpus' default under the user's
configuration (user ``map`` entries win; user ``keep``/``drop`` replace/extend the defaults).
"""
from collections.abc import Mapping

from ..config import LabelConfig, from_dict

__all__ = ["SYNONYMS", "DEFAULT_LABELS", "default_label_config", "merge_label_configs",
           "chain_maps", "apply_label_config"]

# Common spellings of the shared classes → canonical names.
SYNONYMS = {
    "angry": "anger", "disgusted": "disgust", "fearful": "fear", "happy": "happiness",
    "joy": "happiness", "sad": "sadness", "surprised": "surprise",
}

# Per-corpus defaults (plain data: the keys of LabelConfig).
DEFAULT_LABELS = {
    # usual 4-class IEMOCAP: excited merged into happiness; fru, sur, fea, dis, oth, xxx dropped
    "iemocap": {"map": {"neu": "neutral", "hap": "happiness", "exc": "happiness", "ang": "anger",
                        "sad": "sadness"},
                "keep": ["anger", "happiness", "neutral", "sadness"]},
    # German: Wut, Langeweile, Ekel, Angst, Freude, Trauer, Neutral
    "emodb": {"map": {"W": "anger", "L": "boredom", "E": "disgust", "A": "fear", "F": "happiness",
                      "T": "sadness", "N": "neutral"}},
    "cremad": {"map": {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happiness",
                       "NEU": "neutral", "SAD": "sadness"}},
    "ravdess": {"map": {"angry": "anger", "fearful": "fear", "happy": "happiness", "sad": "sadness",
                        "surprised": "surprise"}},
    "meld": {"map": {"joy": "happiness"}},
    "casia": {"map": {"angry": "anger", "happy": "happiness", "sad": "sadness"}},
    "ckplus": {"map": {"happy": "happiness"}},
    "fer2013": {"map": {"angry": "anger", "happy": "happiness", "sad": "sadness"}},
    "isear": {"map": {"joy": "happiness"}},
    "goemotions": {"map": {"joy": "happiness"}},
}


def _as_config(cfg):
    if cfg is None:
        return LabelConfig()
    if isinstance(cfg, LabelConfig):
        return cfg
    if isinstance(cfg, Mapping):
        return from_dict(LabelConfig, cfg, source="label config")
    raise TypeError(f"label config must be a LabelConfig or a mapping, got {type(cfg).__name__}")


def default_label_config(corpus):
    """The default :class:`LabelConfig` of reader ``corpus`` (empty if it has none)."""
    return from_dict(LabelConfig, DEFAULT_LABELS.get(corpus, {}), source=f"default labels of '{corpus}'")


def merge_label_configs(base, override):
    """``override`` layered on ``base``: maps merged (override wins), drops united, keep replaced if set."""
    base, override = _as_config(base), _as_config(override)
    return from_dict(LabelConfig, {"map": {**base.map, **override.map},
                                   "drop": list(dict.fromkeys(base.drop + override.drop)),
                                   "keep": list(override.keep or base.keep)}, source="merged label config")


def chain_maps(first, second):
    """One raw → canonical map applying ``first`` then ``second`` (labels unmapped by both pass)."""
    out = {raw: second.get(mid, mid) for raw, mid in first.items()}
    for raw, canon in second.items():
        out.setdefault(raw, canon)
    return out


def apply_label_config(items, label_cfg, corpus=None):
    """Map raw labels to canonical ones: ``(kept, skipped)``, skipped = ``[(Utterance, reason)]``.

    ``label_cfg`` is a LabelConfig, a mapping with its keys, or None.  With ``corpus``, the
    corpus' :data:`DEFAULT_LABELS` entry is layered underneath.  A relabelled item keeps its
    raw label in ``meta["raw_label"]``.
    """
    cfg = _as_config(label_cfg)
    if corpus is not None:
        cfg = merge_label_configs(default_label_config(corpus), cfg)
    drop, keep = set(cfg.drop), set(cfg.keep)
    kept, skipped = [], []
    for it in items:
        raw = it.label
        label = cfg.map.get(raw, raw)
        shown = f"'{raw}'" if label == raw else f"'{raw}' (→ '{label}')"
        if raw in drop or label in drop:
            skipped.append((it, f"label {shown} dropped by config"))
        elif keep and label not in keep:
            skipped.append((it, f"label {shown} not in keep list ({', '.join(cfg.keep)})"))
        elif label == raw:
            kept.append(it)
        else:
            kept.append(it.replace(label=label, meta={**it.meta, "raw_label": raw}))
    return kept, skipped
