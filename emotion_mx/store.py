"""The feature store: its layout, its files and its reader (:class:`FeatureStore`), the way
:mod:`emotion_mx.artifacts` owns runs and exported models::

    STORE/config.yaml          the DatasetConfig it was built with (raw-media preprocessing)
    STORE/manifest.jsonl       usable items;   STORE/labels.json   class names, index order
    STORE/folds.json           {"folds": [...]} split definitions (emotion_mx.splits)
    STORE/norm/foldK.json      train-split feature statistics of fold K
    STORE/vocab/foldK.json     train-split vocabulary of fold K (when there is text)
    STORE/stats.json           counts, skipped items and reasons;  STORE/meta.json  build state
    STORE/shards/shard-*.npz   feature arrays;  STORE/index.json  written last: a finished store

Sharded ``.npz`` archives plus a JSON index.

A shard holds the arrays of up to ``shard_size`` items under keys ``"<item_id>/<feature>"``
and one ``"__meta__"`` entry (JSON as bytes: per-item label, tokens, flags and the running
sums used for normalisation).  Shards are written atomically (temporary name, then rename),
so a killed build leaves only whole shards; a restarted build lists the items they hold and
extracts only the rest: every item ends up in exactly one shard.

``index.json`` is written last, by :func:`write_index`: its presence marks a finished store.
"""
import glob
import json
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Optional, Tuple

import numpy as np
import yaml

from .contract import check_modalities
from .errors import EmotionMXError
from .fileio import atomic_path, read_json, write_json
from .manifest import read_manifest
from .records import Record
from .splits import split_of

SHARD_DIR = "shards"
INDEX = "index.json"
META_KEY = "__meta__"
CONFIG = "config.yaml"
MANIFEST = "manifest.jsonl"
LABELS = "labels.json"
FOLDS = "folds.json"
STATS = "stats.json"
BUILD_META = "meta.json"
NORM_DIR = "norm"
VOCAB_DIR = "vocab"

AUDIO_FEATURES = ("logmel", "mfcc", "logmel+prosody", "mfcc+prosody", "logmel+mfcc+prosody", "whisper_logmel")
AUDIO_NORMS = ("fold", "utterance")
# features that carry their own normalisation (Whisper's front end): never standardised again
SELF_NORMALISED = ("whisper_logmel",)
# how text becomes ids: the fold's word vocabulary, or MiniLM's WordPiece (tokenizer.json)
TEXT_IDS = ("vocab", "wordpiece")
# how face pixels are scaled: train-split mean/std, or [-1, 1] (the pretrained face model's input)
FRAME_NORMS = ("fold", "symmetric")
MAX_AUDIO_FRAMES = 1500   # 15 s at a 10 ms hop: longer utterances are cut
MAX_TOKENS = 128
# the store config sections that describe raw-media preprocessing
PREPROCESSING_SECTIONS = ("audio", "text", "face", "align")
# AudioConfig fields that exports made before format 2 listed flat in the sidecar's features
_LEGACY_AUDIO_KEYS = ("sample_rate", "n_mels", "win_ms", "hop_ms", "n_mfcc", "deltas", "prosody", "fmin", "fmax")


def norm_path(store_dir, fold):
    return os.path.join(store_dir, NORM_DIR, f"fold{fold}.json")


def vocab_path(store_dir, fold):
    return os.path.join(store_dir, VOCAB_DIR, f"fold{fold}.json")


@dataclass(frozen=True)
class DataSettings(Record):
    """How stored features become model inputs, resolved once per run (every split shares the
    lengths): recorded in the run spec (``data``) and the export sidecar (``features``)."""
    modalities: Tuple[str, ...]
    audio_feature: str = "logmel"
    audio_norm: str = "fold"           # fold: train-split statistics; utterance: also each utterance's mean
    max_audio_frames: Optional[int] = None
    max_tokens: Optional[int] = None
    num_frames: Optional[int] = None
    frame_size: Optional[int] = None
    frame_channels: Optional[int] = None
    text_ids: str = "vocab"
    frame_norm: str = "fold"
    preprocessing: Mapping[str, Any] = field(default_factory=dict)   # the store's raw-media settings

    def __post_init__(self):
        object.__setattr__(self, "modalities", check_modalities(self.modalities))
        if self.text_ids not in TEXT_IDS:
            raise EmotionMXError(f"unknown text_ids '{self.text_ids}'; choose from {', '.join(TEXT_IDS)}")
        if self.frame_norm not in FRAME_NORMS:
            raise EmotionMXError(f"unknown frame_norm '{self.frame_norm}'; choose from {', '.join(FRAME_NORMS)}")
        if self.audio_feature not in AUDIO_FEATURES:
            raise EmotionMXError(f"unknown audio_feature '{self.audio_feature}'; choose from {', '.join(AUDIO_FEATURES)}")
        if self.audio_norm not in AUDIO_NORMS:
            raise EmotionMXError(f"unknown audio_norm '{self.audio_norm}'; choose from {', '.join(AUDIO_NORMS)}")

    @classmethod
    def from_dict(cls, data, where="data settings"):
        cls.check_keys(data, where)
        return cls(**data)

    @classmethod
    def from_legacy(cls, flat, modalities):
        """Settings of a run spec or sidecar written before format 2 (flat keys; the store's
        preprocessing missing in the oldest ones: rebuilt from the flat audio/face keys)."""
        data = {k: flat[k] for k in cls.field_names() if flat.get(k) is not None}
        data["modalities"] = modalities
        if "preprocessing" not in data:
            face = {}
            if "frame_size" in flat:
                face["size"] = flat["frame_size"]
            if "frame_channels" in flat:
                face["grayscale"] = flat["frame_channels"] == 1
            data["preprocessing"] = {"audio": {k: flat[k] for k in _LEGACY_AUDIO_KEYS if k in flat}, "face": face}
        return cls(**data)


def shard_paths(store_dir):
    return sorted(glob.glob(os.path.join(store_dir, SHARD_DIR, "shard-*.npz")))


def clean_partial(store_dir):
    """Remove temporary files left by a killed build (never complete shards)."""
    for tmp in glob.glob(os.path.join(store_dir, SHARD_DIR, ".shard-*.tmp*")):
        os.unlink(tmp)


def write_shard(store_dir, name, items):
    """``items``: list of ``(item_id, arrays: dict[str, ndarray], meta: dict)``. Returns the path."""
    arrays = {}
    metas = {}
    for item_id, feats, meta in items:
        for key, value in feats.items():
            arrays[f"{item_id}/{key}"] = np.ascontiguousarray(value)
        metas[item_id] = meta
    arrays[META_KEY] = np.frombuffer(json.dumps(metas).encode("utf-8"), dtype=np.uint8)
    path = os.path.join(store_dir, SHARD_DIR, f"shard-{name}.npz")
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)
    return path


def read_shard_meta(path):
    """Per-item metadata of a shard (cheap: does not load the feature arrays)."""
    with np.load(path, allow_pickle=False) as z:
        return json.loads(z[META_KEY].tobytes().decode("utf-8"))


def new_shard_name(index):
    """Unique shard name: a per-build token plus a counter (no clash across resumed builds)."""
    return f"{time.strftime('%Y%m%d%H%M%S')}-{os.getpid()}-{index:05d}"


def write_index(store_dir, entries):
    write_json(os.path.join(store_dir, INDEX), entries, indent=None)


class ShardCache:
    """Open shards on demand; each shard file is opened once."""

    def __init__(self, store_dir):
        self.store_dir = store_dir
        self._open = {}

    def get(self, shard, item_id, feature):
        z = self._open.get(shard)
        if z is None:
            z = self._open[shard] = np.load(os.path.join(self.store_dir, SHARD_DIR, shard), allow_pickle=False)
        return z[f"{item_id}/{feature}"]

    def close(self):
        for z in self._open.values():
            z.close()
        self._open.clear()


class FeatureStore:
    """A finished store written by :func:`emotion_mx.build.build_dataset`."""

    def __init__(self, path):
        self.path = path
        if not os.path.isdir(path):
            raise EmotionMXError(f"feature store {path} does not exist; build it with tools/build_dataset.py")
        if not os.path.isfile(os.path.join(path, INDEX)):
            if not any(os.path.exists(os.path.join(path, n)) for n in (SHARD_DIR, MANIFEST, BUILD_META)):
                what = ("a training run or an exported model (it has model.json), not a feature store"
                        if os.path.isfile(os.path.join(path, "model.json")) else
                        f"not a feature store (no {INDEX}, {MANIFEST} or {SHARD_DIR}/)")
                raise EmotionMXError(f"{path} is {what}; give --data the folder that "
                                     "tools/build_dataset.py --out wrote")
            raise EmotionMXError(f"feature store {path} is incomplete (no {INDEX}); run "
                                 "tools/build_dataset.py again with the same arguments to finish it")
        self.index = read_json(os.path.join(path, INDEX))
        self.labels = read_json(os.path.join(path, LABELS))
        self.folds = read_json(os.path.join(path, FOLDS))
        self.items = [it for it in read_manifest(os.path.join(path, MANIFEST)) if it.id in self.index]
        self.by_id = {it.id: it for it in self.items}
        self.label_index = {l: i for i, l in enumerate(self.labels)}
        self._shards = ShardCache(path)

    @property
    def num_folds(self):
        return len(self.folds["folds"])

    def _fold(self, fold):
        if not 0 <= fold < self.num_folds:
            raise EmotionMXError(f"fold {fold} does not exist; {self.path} has folds 0..{self.num_folds - 1}")
        return self.folds["folds"][fold]

    def ids(self, fold, split):
        fd = self._fold(fold)
        return [it.id for it in self.items if split_of(it, fd) == split and it.label in self.label_index]

    def norm(self, fold):
        self._fold(fold)
        return read_json(norm_path(self.path, fold))

    def vocab(self, fold):
        from .features.text import load_vocab   # gluonnlp/MXNet: only when there is text
        path = vocab_path(self.path, fold)
        return load_vocab(path) if os.path.isfile(path) else None

    def has(self, item_id, feature):
        return feature in self.index[item_id].get("shapes", {})

    def array(self, item_id, feature):
        return self._shards.get(self.index[item_id]["shard"], item_id, feature)

    def tokens(self, item_id):
        return self.index[item_id].get("tokens")

    def resolve_settings(self, modalities, audio_feature="logmel", max_audio_frames=None,
                         max_tokens=None, num_frames=None, audio_norm="fold", text_ids="vocab",
                         frame_norm="fold", frame_size=None, frame_channels=None):
        """:class:`DataSettings` shared by every split (so train/valid/test arrays have one
        shape): unset lengths become the store's longest item, capped.  ``frame_size`` /
        ``frame_channels``: what the model needs (checked against the store's faces)."""
        s = DataSettings(modalities, audio_feature=audio_feature, audio_norm=audio_norm, text_ids=text_ids,
                         frame_norm=frame_norm, preprocessing=self.preprocessing())
        shapes = [e.get("shapes", {}) for e in self.index.values()]
        out = {}
        if "audio" in s.modalities:
            key = audio_feature.split("+")[0]
            ts = [sh[key][0] for sh in shapes if key in sh]
            if not ts:
                hint = ("build the store with audio.whisper: true (e.g. configs/datasets/emodb_pretrained.yaml)"
                        if key == "whisper_logmel" else "drop 'audio' from the modalities")
                raise EmotionMXError(f"{self.path} has no '{key}' audio features; {hint}")
            out["max_audio_frames"] = int(max_audio_frames or min(max(ts), MAX_AUDIO_FRAMES))
        if "text" in s.modalities:
            texts = [e["tokens"] for e in self.index.values() if e.get("tokens")]
            if not texts:
                raise EmotionMXError(f"{self.path} has no transcripts; drop 'text' from the modalities")
            if text_ids == "wordpiece" and not max_tokens:
                from .models.minilm import MiniLMTokenizer
                tok = MiniLMTokenizer(wordpiece_file()).tok
                ls = [len(e.ids) for e in tok.encode_batch([" ".join(t) for t in texts])]
            else:
                ls = [len(t) for t in texts]
            out["max_tokens"] = int(max_tokens or min(max(ls), MAX_TOKENS))
        if "video" in s.modalities:
            fs = [sh["frames"] for sh in shapes if "frames" in sh]
            if not fs:
                raise EmotionMXError(f"{self.path} has no face frames; drop 'video' from the modalities")
            out["num_frames"] = int(num_frames or max(f[0] for f in fs))
            out["frame_channels"], out["frame_size"] = int(fs[0][1]), int(fs[0][2])
            want = (frame_channels or out["frame_channels"], frame_size or out["frame_size"])
            if want != (out["frame_channels"], out["frame_size"]):
                raise EmotionMXError(f"{self.path} holds {out['frame_channels']}-channel faces of "
                                     f"{out['frame_size']} px; the model takes {want[0]}-channel faces of "
                                     f"{want[1]} px: build a store with face.size: {want[1]} and face.grayscale: "
                                     f"{'true' if want[0] == 1 else 'false'} (e.g. configs/datasets/ckplus48_pretrained.yaml)")
        return replace(s, **out)

    def preprocessing(self):
        """The raw-media settings the store was built with (audio/text/face/align sections of its
        config.yaml): prediction from raw media must repeat them exactly."""
        with open(os.path.join(self.path, CONFIG), encoding="utf-8") as f:
            cfg = yaml.safe_load(f) or {}
        return {k: cfg[k] for k in PREPROCESSING_SECTIONS if k in cfg}

    def media_root(self):
        """The corpus root the manifest's media paths are relative to (recorded by the build)."""
        return read_json(os.path.join(self.path, BUILD_META))["root"]

    def audio_dim(self, audio_feature):
        parts = audio_feature.split("+")
        first = next(i for i, e in self.index.items() if parts[0] in e.get("shapes", {}))
        return sum(self.index[first]["shapes"][k][1] for k in parts)

    def text_vocab(self, fold, settings):
        """What turns this store's text into ids for ``settings``: the fold's word vocabulary or
        MiniLM's WordPiece tokenizer."""
        if settings.text_ids == "wordpiece":
            return load_text_vocab(wordpiece_file(), settings)
        return self.vocab(fold)


def wordpiece_file():
    """MiniLM's ``tokenizer.json`` from the installed weight package (a run keeps its own copy)."""
    from .pretrained.sources import package_file
    return package_file("minilm_l6", "tokenizer.json")


def load_text_vocab(path, settings):
    """A run's or an export's text vocabulary file as ``settings`` use it: a gluonnlp vocabulary
    (``text_ids: vocab``) or a WordPiece tokenizer (``text_ids: wordpiece``)."""
    if settings.text_ids == "wordpiece":
        from .models.minilm import MiniLMTokenizer
        return MiniLMTokenizer(path, max_length=settings.max_tokens)
    from .features.text import load_vocab   # gluonnlp/MXNet: only when there is text
    return load_vocab(path)
